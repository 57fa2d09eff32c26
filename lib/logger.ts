import { Logger, type LogItem, LogLevelThreshold } from '@aws-lambda-powertools/logger'
import { getConfig } from './config.ts'
import { writeLogLine } from './log-output.ts'

/**
 * The Powertools logger with one change: lines leave through `log-output.ts`, batched
 * per turn of the event loop, instead of one synchronous console write each.
 */
class ServiceLogger extends Logger {
  protected override printLog(logLevel: number, log: LogItem): void {
    log.prepareForPrint()
    const attributes = log.getAttributes()
    // Powertools' replacer (errors, bigints, cycles) visits every key; most lines, the
    // access lines among them, hold only plain values and need none of it.
    const line = isFlat(attributes)
      ? JSON.stringify(attributes)
      : JSON.stringify(attributes, this.getJsonReplacer())
    if (logLevel >= LogLevelThreshold.ERROR) writeLogLine('stderr', line, true)
    else if (logLevel >= LogLevelThreshold.WARN) writeLogLine('stderr', line)
    else writeLogLine('stdout', line)
  }
}

function isFlat(attributes: Record<string, unknown>): boolean {
  for (const key in attributes) {
    const value = attributes[key]
    if (typeof value === 'object' && value !== null) return false
    if (typeof value === 'bigint') return false
  }
  return true
}

/**
 * One JSON logger per process part (a function, the gateway, the worker). Field names
 * are shared by every process because the dashboards query them.
 */
export function createLogger(part: string): Logger {
  return new ServiceLogger({
    serviceName: 'docservice',
    logLevel: getConfig().LOG_LEVEL,
    persistentKeys: { function: part },
  })
}

type Fields = Record<string, unknown>
type Write = (message: string, fields?: Fields) => void

/** A logger for one request: its own keys ride on every line it writes. */
export type RequestLog = {
  readonly fields: Fields
  debug: Write
  info: Write
  warn: Write
  error: Write
}

/**
 * Binds per-request keys to a shared logger without touching its state. In-process,
 * several invocations of one function run at once; keys appended to the shared logger
 * would leak from one request into another, and a child logger per request is slow.
 */
export function requestLog(logger: Logger, fields: Fields): RequestLog {
  return {
    fields,
    debug: (message, extra) => logger.debug(message, { ...fields, ...extra }),
    info: (message, extra) => logger.info(message, { ...fields, ...extra }),
    warn: (message, extra) => logger.warn(message, { ...fields, ...extra }),
    error: (message, extra) => logger.error(message, { ...fields, ...extra }),
  }
}

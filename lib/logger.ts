import { Logger } from '@aws-lambda-powertools/logger'
import { getConfig } from './config.ts'

/**
 * One JSON logger per process part (a function, the gateway, the worker). Field names
 * are shared by every process because the dashboards query them.
 */
export function createLogger(part: string): Logger {
  return new Logger({
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

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

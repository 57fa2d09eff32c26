import { randomUUID } from 'node:crypto'
import type { Logger } from '@aws-lambda-powertools/logger'
import type middy from '@middy/core'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'
import { requestLog } from '../logger.ts'

const WELL_FORMED = /^[A-Za-z0-9._-]{1,128}$/

/** The caller's correlation id when it is well-formed, otherwise a fresh one. */
export function correlationIdFrom(value: string | undefined): string {
  return value && WELL_FORMED.test(value) ? value : randomUUID()
}

function routeOf(event: ApiEvent): string {
  const key = event.routeKey ?? ''
  const space = key.indexOf(' ')
  return space === -1 ? key : key.slice(space + 1)
}

/**
 * Opens the request: correlation id, a request logger carrying its keys (never stored
 * on the shared logger, so no key leaks into another invocation), the echoed header,
 * and one access line at the end.
 */
export function correlation(
  logger: Logger,
): middy.MiddlewareObj<ApiEvent, ApiResult, Error, ServiceContext> {
  function before(request: ApiRequest): void {
    const { event, context } = request
    const correlationId = correlationIdFrom(event.headers?.['x-correlation-id'])
    context.state = { correlationId, clientIp: '', startedAt: performance.now() }
    context.logger = requestLog(logger, {
      correlation_id: correlationId,
      request_id: event.requestContext?.requestId ?? context.awsRequestId,
    })
  }

  function finish(request: ApiRequest): void {
    const { event, context, response } = request
    const state = context.state
    if (!state || !response) return

    response.headers = { ...response.headers, 'x-correlation-id': state.correlationId }
    const status = response.statusCode ?? 200
    const fields = {
      method: event.requestContext?.http?.method,
      route: routeOf(event),
      path: event.rawPath,
      status,
      latency_ms: Math.round((performance.now() - state.startedAt) * 100) / 100,
      client_ip: state.clientIp,
    }
    if (status >= 500) context.logger.error('request finished', fields)
    else context.logger.info('request finished', fields)
  }

  return { before, after: finish, onError: finish }
}

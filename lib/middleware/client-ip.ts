import type middy from '@middy/core'
import { clientIp as resolveClientIp } from '../client-ip.ts'
import { getConfig } from '../config.ts'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'

/**
 * Records the client address for logs and limits: the gateway's peer, or, when that
 * peer is a trusted proxy, the address the proxies forwarded (see lib/client-ip.ts).
 */
export function clientIp(): middy.MiddlewareObj<
  ApiEvent,
  ApiResult,
  Error,
  ServiceContext
> {
  function before(request: ApiRequest): void {
    const { event, context } = request
    context.state.clientIp = resolveClientIp(
      event.requestContext?.http?.sourceIp ?? '',
      event.headers?.['x-forwarded-for'],
      getConfig().TRUSTED_PROXIES,
    )
  }
  return { before }
}

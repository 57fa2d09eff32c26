import type middy from '@middy/core'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'

/** Records the client address for logs and limits: the direct peer of the gateway. */
export function clientIp(): middy.MiddlewareObj<ApiEvent, ApiResult, Error, ServiceContext> {
  function before(request: ApiRequest): void {
    request.context.state.clientIp = request.event.requestContext?.http?.sourceIp ?? ''
  }
  return { before }
}

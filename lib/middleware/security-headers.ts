import type middy from '@middy/core'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'

// An API answers data, never pages: nothing may be framed, sniffed, cached or scripted.
const HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
} as const

export function securityHeaders(): middy.MiddlewareObj<
  ApiEvent,
  ApiResult,
  Error,
  ServiceContext
> {
  function addHeaders(request: ApiRequest): void {
    if (!request.response) return
    request.response.headers = { ...HEADERS, ...request.response.headers }
  }
  return { after: addHeaders, onError: addHeaders }
}

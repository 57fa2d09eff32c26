import type middy from '@middy/core'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'

// An API answers data, never pages: nothing may be framed, sniffed, cached or scripted.
const HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
} as const

/** Lower-cases header names so that one header never leaves twice in two spellings. */
function lowerCased(headers: ApiResult['headers'] = {}): Record<string, string> {
  const result: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers))
    result[name.toLowerCase()] = String(value)
  return result
}

/** Adds the security headers a response has not set itself, to every answer. */
export function securityHeaders(): middy.MiddlewareObj<
  ApiEvent,
  ApiResult,
  Error,
  ServiceContext
> {
  function addHeaders(request: ApiRequest): void {
    if (!request.response) return
    request.response.headers = { ...HEADERS, ...lowerCased(request.response.headers) }
  }
  return { after: addHeaders, onError: addHeaders }
}

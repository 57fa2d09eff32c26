import type middy from '@middy/core'
import { HttpError } from '../errors.ts'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'
import {
  allowedOrigins,
  CSRF_COOKIE,
  CSRF_HEADER,
  findSession,
  REFRESH_COOKIE,
  readCookie,
  safeEqual,
  verifyCsrfToken,
} from '../sessions.ts'

type Middleware = middy.MiddlewareObj<ApiEvent, ApiResult, Error, ServiceContext>

/**
 * `origin`: refuses requests that a browser marks as cross-site or that come from an
 * origin not allowed. `session`: also requires the session's CSRF token in a header.
 */
export type CsrfMode = 'origin' | 'session'

const VARY = ['Origin', 'Sec-Fetch-Site', 'Cookie', 'X-CSRF-Token']

function refused(code: string, detail: string): HttpError {
  return new HttpError(403, code, { detail })
}

function checkOrigin(event: ApiEvent): void {
  // Fetch Metadata: a browser says where the request comes from and a page cannot lie.
  if (event.headers?.['sec-fetch-site']?.trim().toLowerCase() === 'cross-site')
    throw refused('cross_site_request', 'Cross-site requests are refused')

  // Absent for non-browser clients; present, it must be allowed ("null" never is).
  const origin = event.headers?.origin
  if (origin !== undefined && !allowedOrigins().includes(origin))
    throw refused('origin_not_allowed', 'Requests from this origin are refused')
}

async function checkToken(event: ApiEvent): Promise<void> {
  const refreshToken = readCookie(event, REFRESH_COOKIE)
  // No live session, nothing to forge: the endpoint answers that case itself.
  const session = refreshToken ? await findSession(refreshToken) : undefined
  if (!session) return

  const sent = event.headers?.[CSRF_HEADER]
  const cookie = readCookie(event, CSRF_COOKIE)
  const valid =
    sent !== undefined &&
    (cookie === undefined || safeEqual(cookie, sent)) &&
    verifyCsrfToken(session, sent)
  if (!valid)
    throw refused('csrf_token_invalid', `Send the session's CSRF token in ${CSRF_HEADER}`)
}

/** Guards an endpoint that a browser authenticates with the session cookie. */
export function csrf(mode: CsrfMode): Middleware {
  async function before(request: ApiRequest): Promise<void> {
    checkOrigin(request.event)
    if (mode === 'session') await checkToken(request.event)
  }
  return { before }
}

/**
 * Adds `Vary` for the request headers the CSRF checks read, on every answer. Used before
 * problemErrors(), for the same reason as securityHeaders().
 */
export function csrfVary(): Middleware {
  function addVary(request: ApiRequest): void {
    const response = request.response
    if (!response) return
    const headers = response.headers ?? {}
    const existing = Object.entries(headers).find(
      ([name]) => name.toLowerCase() === 'vary',
    )
    const values = existing ? [String(existing[1]), ...VARY] : VARY
    const rest = Object.fromEntries(
      Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'vary'),
    )
    response.headers = { ...rest, vary: values.join(', ') }
  }
  return { after: addVary, onError: addVary }
}

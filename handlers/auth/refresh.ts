import { signAccessToken } from '../../lib/auth.ts'
import { HttpError, toProblem } from '../../lib/errors.ts'
import { type ApiResult, endpoint, json } from '../../lib/http.ts'
import {
  clearedSessionCookies,
  REFRESH_COOKIE,
  readCookie,
  rotateRefreshToken,
  sessionCookies,
} from '../../lib/sessions.ts'

// A refusal also clears the cookies, so a browser stops sending a dead session.
function sessionEnded(code: string, detail: string, correlationId: string): ApiResult {
  const problem = toProblem(new HttpError(401, code, { detail }), correlationId)
  return {
    statusCode: 401,
    headers: { 'content-type': 'application/problem+json' },
    body: JSON.stringify(problem),
    cookies: clearedSessionCookies(),
  }
}

export const handler = endpoint(
  { name: 'auth-refresh', auth: false, limits: { ip: 'refresh' }, csrf: 'session' },
  async function refresh({ event, context, log }) {
    const { correlationId } = context.state
    const token = readCookie(event, REFRESH_COOKIE)
    const outcome = token ? await rotateRefreshToken(token) : { kind: 'invalid' as const }

    if (outcome.kind === 'reused') {
      log.warn('refresh token reused: session revoked', {
        session_id: outcome.sessionId,
        target_user_id: outcome.userId,
      })
      return sessionEnded(
        'refresh_token_reused',
        'This session was ended because its refresh token was used twice; log in again',
        correlationId,
      )
    }
    if (outcome.kind === 'invalid') {
      return sessionEnded(
        'invalid_refresh_token',
        'No valid session; log in again',
        correlationId,
      )
    }

    const { token: accessToken, expiresIn } = await signAccessToken({
      userId: outcome.userId,
      role: outcome.role,
      version: outcome.version,
    })
    return {
      ...json(200, {
        accessToken,
        tokenType: 'Bearer',
        expiresIn,
        csrfToken: outcome.csrfToken,
      }),
      cookies: sessionCookies(outcome),
    }
  },
)

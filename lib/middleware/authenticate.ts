import type middy from '@middy/core'
import { verifyAccessToken } from '../auth.ts'
import { query } from '../db.ts'
import { unauthorized } from '../errors.ts'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'

export type AuthUser = { id: string; email: string; role: 'user' | 'admin' }

type UserRow = AuthUser & { disabled: boolean; token_version: number }

function bearerToken(event: ApiEvent): string | undefined {
  const value = event.headers?.authorization
  const match = value?.match(/^Bearer ([A-Za-z0-9._~+/-]+=*)$/i)
  return match?.[1]
}

/**
 * Requires a valid access token and an account that still exists and is enabled:
 * a disabled account is refused at its next request, not only at its next login.
 */
export function authenticate(): middy.MiddlewareObj<
  ApiEvent,
  ApiResult,
  Error,
  ServiceContext
> {
  async function before(request: ApiRequest): Promise<void> {
    const token = bearerToken(request.event)
    if (!token) throw unauthorized()

    const claims = await verifyAccessToken(token)
    if (!claims) throw unauthorized()

    const { rows } = await query<UserRow>(
      'SELECT id, email, role, disabled, token_version FROM users WHERE id = $1',
      [claims.userId],
    )
    const user = rows[0]
    if (!user || user.disabled) throw unauthorized('The account is unknown or disabled')
    // Raised when every session of the account is revoked (password reset, admin).
    if ((claims.version ?? 0) !== user.token_version)
      throw unauthorized('The session was revoked')

    request.context.state.user = { id: user.id, email: user.email, role: user.role }
    request.context.logger.fields.user_id = user.id
  }
  return { before }
}

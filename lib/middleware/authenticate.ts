import type middy from '@middy/core'
import DataLoader from 'dataloader'
import { verifyAccessToken } from '../auth.ts'
import { getPool, translateDbError } from '../db.ts'
import { unauthorized } from '../errors.ts'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'
import { UUID_PATTERN } from '../pagination.ts'

export type AuthUser = { id: string; email: string; role: 'user' | 'admin' }

type UserRow = AuthUser & { disabled: boolean; token_version: number }

// Like the rate-limit checks, the lookups of one turn of the event loop share one
// query; a batch that fails fails each of its requests with the same error.
async function findUsers(ids: readonly string[]): Promise<(UserRow | undefined)[]> {
  try {
    const { rows } = await getPool().query<UserRow>({
      name: 'authenticate-users',
      text: 'SELECT id, email, role, disabled, token_version FROM users WHERE id = ANY($1::uuid[])',
      values: [ids],
    })
    const byId = new Map(rows.map((row) => [row.id, row]))
    return ids.map((id) => byId.get(id))
  } catch (error) {
    throw translateDbError(error)
  }
}

const users = new DataLoader<string, UserRow | undefined>(findUsers, {
  cache: false,
  maxBatchSize: 200,
  batchScheduleFn: (dispatch) => setImmediate(dispatch),
})

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

    // Only this service signs tokens, so their subject is an account id; a batch
    // must still never meet a value that would fail the whole query.
    const user = UUID_PATTERN.test(claims.userId)
      ? await users.load(claims.userId)
      : undefined
    if (!user || user.disabled) throw unauthorized('The account is unknown or disabled')
    // Raised when every session of the account is revoked (password reset, admin).
    if ((claims.version ?? 0) !== user.token_version)
      throw unauthorized('The session was revoked')

    request.context.state.user = { id: user.id, email: user.email, role: user.role }
    request.context.logger.fields.user_id = user.id
  }
  return { before }
}

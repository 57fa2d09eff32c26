import type middy from '@middy/core'
import { verifyAccessToken } from '../auth.ts'
import { batchLoader, getPool } from '../db.ts'
import { unauthorized } from '../errors.ts'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'
import { UUID_PATTERN } from '../pagination.ts'
import {
  decisionFrom,
  type PolicyName,
  type RateDecision,
  type RatePolicy,
  ratePolicy,
} from '../rate-limit.ts'
import { enforce } from './rate-limit.ts'

export type AuthUser = { id: string; email: string; role: 'user' | 'admin' }

type Lookup = { userId: string; version: number; policy?: RatePolicy }

type Found = {
  user?: AuthUser & { disabled: boolean; token_version: number }
  decision?: RateDecision
}

type AccountRow = {
  slot: number
  id: string | null
  email: string
  role: AuthUser['role']
  disabled: boolean
  token_version: number
  allowed: boolean | null
  remaining: number
  next_token_seconds: number
}

// authenticate_accounts() is in migrations/005_rate_limit_batches.sql.
const LOOKUP = {
  name: 'authenticate-accounts',
  text: 'SELECT * FROM authenticate_accounts($1, $2, $3, $4, $5)',
}

function found(row: AccountRow | undefined): Found {
  if (!row?.id) return {}
  const { id, email, role, disabled, token_version } = row
  const user = { id, email, role, disabled, token_version }
  if (row.allowed === null) return { user }
  return { user, decision: decisionFrom({ ...row, allowed: row.allowed }) }
}

async function findAccounts(lookups: readonly Lookup[]): Promise<Found[]> {
  const { rows } = await getPool().query<AccountRow>({
    ...LOOKUP,
    values: [
      lookups.map((lookup) => lookup.userId),
      lookups.map((lookup) => lookup.version),
      lookups.map((lookup) =>
        lookup.policy ? `${lookup.policy.name}:account:${lookup.userId}` : null,
      ),
      lookups.map((lookup) => lookup.policy?.quota ?? null),
      lookups.map((lookup) =>
        lookup.policy ? lookup.policy.windowSeconds * 1_000_000 : null,
      ),
    ],
  })
  const bySlot = new Map(rows.map((row) => [row.slot, row]))
  return lookups.map((_, index) => found(bySlot.get(index + 1)))
}

// The lookups of one turn of the event loop, with their per-account checks, share one
// round trip (lib/db.ts).
const accounts = batchLoader(findAccounts)

function bearerToken(event: ApiEvent): string | undefined {
  const value = event.headers?.authorization
  const match = value?.match(/^Bearer ([A-Za-z0-9._~+/-]+=*)$/i)
  return match?.[1]
}

/**
 * Requires a valid access token and an account that still exists and is enabled:
 * a disabled account is refused at its next request, not only at its next login.
 * With `limit`, the account's token bucket for that policy is charged in the same round
 * trip, once the account has passed those checks.
 */
export function authenticate(
  options: { limit?: PolicyName } = {},
): middy.MiddlewareObj<ApiEvent, ApiResult, Error, ServiceContext> {
  async function before(request: ApiRequest): Promise<void> {
    const token = bearerToken(request.event)
    if (!token) throw unauthorized()

    const claims = await verifyAccessToken(token)
    if (!claims) throw unauthorized()

    const policy = options.limit ? ratePolicy(options.limit) : undefined
    // Only this service signs tokens, so their subject is an account id; a batch
    // must still never meet a value that would fail the whole query.
    const { user, decision } = UUID_PATTERN.test(claims.userId)
      ? await accounts.load({
          userId: claims.userId,
          version: claims.version ?? 0,
          policy,
        })
      : {}
    if (!user || user.disabled) throw unauthorized('The account is unknown or disabled')
    // Raised when every session of the account is revoked (password reset, admin).
    if ((claims.version ?? 0) !== user.token_version)
      throw unauthorized('The session was revoked')

    const { state, logger } = request.context
    state.user = { id: user.id, email: user.email, role: user.role }
    logger.fields.user_id = user.id
    if (policy && decision) enforce(state, policy, decision)
  }
  return { before }
}

import { type Config, getConfig } from './config.ts'
import { getPool } from './db.ts'

type PolicySettings = {
  setting: keyof Pick<
    Config,
    | 'RATE_LIMIT_LOGIN'
    | 'RATE_LIMIT_REGISTER'
    | 'RATE_LIMIT_PASSWORD_RESET'
    | 'RATE_LIMIT_REFRESH'
    | 'RATE_LIMIT_DOCUMENTS'
    | 'RATE_LIMIT_IP_CEILING'
  >
  failClosed: boolean
}

// The auth endpoints are what password guessing and account farming aim at, so when
// their limit cannot be checked they refuse (503) rather than run unguarded. Every other
// endpoint lets the request through: it needs PostgreSQL itself and fails on its own
// when the database is down, and a limiter fault alone must not take the API away.
const POLICIES = {
  login: { setting: 'RATE_LIMIT_LOGIN', failClosed: true },
  register: { setting: 'RATE_LIMIT_REGISTER', failClosed: true },
  'password-reset': { setting: 'RATE_LIMIT_PASSWORD_RESET', failClosed: true },
  refresh: { setting: 'RATE_LIMIT_REFRESH', failClosed: true },
  documents: { setting: 'RATE_LIMIT_DOCUMENTS', failClosed: false },
  'ip-ceiling': { setting: 'RATE_LIMIT_IP_CEILING', failClosed: false },
} as const satisfies Record<string, PolicySettings>

export type PolicyName = keyof typeof POLICIES

export type RatePolicy = {
  name: PolicyName
  /** Requests allowed per window: the bucket's capacity. */
  quota: number
  windowSeconds: number
  failClosed: boolean
}

export type RateDecision = {
  allowed: boolean
  /** Whole tokens left after this request. */
  remaining: number
  /** Seconds until the next token arrives; 0 when the bucket is full. */
  nextTokenSeconds: number
}

/** A policy with its numbers from the configuration. */
export function ratePolicy(name: PolicyName): RatePolicy {
  const { setting, failClosed } = POLICIES[name]
  const { quota, windowSeconds } = getConfig()[setting]
  return { name, quota, windowSeconds, failClosed }
}

// One statement, so concurrent checks of one key serialise on its row lock and each sees
// the fill its predecessor left. $1 key, $2 quota, $3 window in microseconds, $4 the time
// (null: clock_timestamp(), the real time even inside a transaction, where now() stands
// still). Units are described in migrations/003_rate_limits.sql. A new bucket starts full
// and pays for this request at once. Time never runs backwards in a bucket: a check that
// read the clock before waiting for the lock refills nothing.
const CHECK_SQL = `
INSERT INTO rate_limit_buckets AS bucket (key, fill, allowed, updated_at, full_at)
SELECT $1, ($2::bigint - 1) * $3::bigint, true, clock.now,
  clock.now + interval '1 microsecond' * ceil($3::bigint / $2::numeric)
FROM (SELECT coalesce($4::timestamptz, clock_timestamp()) AS now) AS clock
ON CONFLICT (key) DO UPDATE SET (fill, allowed, updated_at, full_at) = (
  SELECT refill.fill - take.units, take.units > 0, refill.now,
    refill.now + interval '1 microsecond'
      * ceil(($2::bigint * $3::bigint - refill.fill + take.units) / $2::numeric)
  FROM (
    SELECT
      least(
        $2::bigint * $3::bigint,
        bucket.fill + $2::bigint * least($3::bigint, greatest(0,
          (extract(epoch FROM excluded.updated_at - bucket.updated_at) * 1000000)::bigint))
      ) AS fill,
      greatest(bucket.updated_at, excluded.updated_at) AS now
  ) AS refill,
  LATERAL (
    SELECT CASE WHEN refill.fill >= $3::bigint THEN $3::bigint ELSE 0 END AS units
  ) AS take
)
RETURNING allowed,
  (fill / $3::bigint)::integer AS remaining,
  CASE WHEN fill >= $2::bigint * $3::bigint THEN 0
    ELSE ceil(((fill / $3::bigint + 1) * $3::bigint - fill) / $2::numeric)
  END::float8 / 1000000 AS next_token_seconds`

// A full bucket is the same as no bucket, so its row can go. SKIP LOCKED leaves rows that
// a check holds right now; the batch bound keeps one run short.
const CLEANUP_SQL = `
DELETE FROM rate_limit_buckets WHERE key IN (
  SELECT key FROM rate_limit_buckets
  WHERE full_at <= coalesce($1::timestamptz, clock_timestamp())
  LIMIT $2 FOR UPDATE SKIP LOCKED
)`

const CLEANUP_INTERVAL_MS = 60_000
const CLEANUP_BATCH = 10_000

let lastCleanup = 0

type CheckRow = { allowed: boolean; remaining: number; next_token_seconds: number }

/**
 * Takes one token from the bucket of `subject` under `policy`, if one is there. `at`
 * replaces the database clock; only tests pass it, to step time without waiting.
 */
export async function checkRateLimit(
  policy: RatePolicy,
  subject: string,
  options: { at?: Date } = {},
): Promise<RateDecision> {
  // Named: each connection parses and plans the statement once.
  const { rows } = await getPool().query<CheckRow>({
    name: 'rate-limit-check',
    text: CHECK_SQL,
    values: [
      `${policy.name}:${subject}`,
      policy.quota,
      policy.windowSeconds * 1_000_000,
      options.at ?? null,
    ],
  })
  const row = rows[0] as CheckRow
  if (!options.at) cleanUpNowAndThen()

  return {
    allowed: row.allowed,
    remaining: row.remaining,
    nextTokenSeconds: row.next_token_seconds,
  }
}

/** Deletes buckets that are full again (at most `limit`); returns how many went. */
export async function removeFullBuckets(
  options: { at?: Date; limit?: number } = {},
): Promise<number> {
  const { rowCount } = await getPool().query(CLEANUP_SQL, [
    options.at ?? null,
    options.limit ?? CLEANUP_BATCH,
  ])
  return rowCount ?? 0
}

// Each process cleans up at most once a minute, after a check and without holding it up.
// A failed run only leaves full rows for the next one.
function cleanUpNowAndThen(): void {
  const now = Date.now()
  if (now - lastCleanup < CLEANUP_INTERVAL_MS) return
  lastCleanup = now
  removeFullBuckets().catch(() => {})
}

/** The policy as an item of the `RateLimit-Policy` header: `"login";q=10;w=60`. */
export function policyItem(policy: RatePolicy): string {
  return `"${policy.name}";q=${policy.quota};w=${policy.windowSeconds}`
}

/** The bucket state as an item of the `RateLimit` header: `"login";r=3;t=6`. */
export function stateItem(policy: RatePolicy, decision: RateDecision): string {
  return `"${policy.name}";r=${decision.remaining};t=${Math.ceil(decision.nextTokenSeconds)}`
}

/** Whole seconds a refused client should wait: until the next token, at least 1. */
export function retryAfterSeconds(decision: RateDecision): number {
  return Math.max(1, Math.ceil(decision.nextTokenSeconds))
}

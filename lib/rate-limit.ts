import { type Config, getConfig } from './config.ts'
import { batchLoader, getPool } from './db.ts'

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

type Check = { key: string; quota: number; windowMicros: number; at: Date | null }

type CheckRow = {
  slot: number
  allowed: boolean
  remaining: number
  next_token_seconds: number
}

// The arithmetic lives in take_rate_token(), which take_rate_tokens() calls for each
// check (migrations/005_rate_limit_batches.sql).
// Named: each connection parses and plans the statement once.
const CHECK_BATCH = {
  name: 'rate-limit-take',
  text: 'SELECT slot, allowed, remaining, next_token_seconds FROM take_rate_tokens($1, $2, $3, $4)',
}

async function takeTokens(checks: readonly Check[]): Promise<RateDecision[]> {
  const { rows } = await getPool().query<CheckRow>({
    ...CHECK_BATCH,
    values: [
      checks.map((check) => check.key),
      checks.map((check) => check.quota),
      checks.map((check) => check.windowMicros),
      checks.map((check) => check.at),
    ],
  })
  const decisions: RateDecision[] = new Array(checks.length)
  for (const row of rows) decisions[row.slot - 1] = decisionFrom(row)
  return decisions
}

/** A decision from a row of take_rate_token()'s columns. */
export function decisionFrom(row: {
  allowed: boolean
  remaining: number
  next_token_seconds: number
}): RateDecision {
  return {
    allowed: row.allowed,
    remaining: row.remaining,
    nextTokenSeconds: row.next_token_seconds,
  }
}

// Checks made in one turn of the event loop share one round trip (lib/db.ts).
const checks = batchLoader(takeTokens)

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

/**
 * Takes one token from the bucket of `subject` under `policy`, if one is there. `at`
 * replaces the database clock; only tests pass it, to step time without waiting.
 */
export async function checkRateLimit(
  policy: RatePolicy,
  subject: string,
  options: { at?: Date } = {},
): Promise<RateDecision> {
  const decision = await checks.load({
    key: `${policy.name}:${subject}`,
    quota: policy.quota,
    windowMicros: policy.windowSeconds * 1_000_000,
    at: options.at ?? null,
  })
  if (!options.at) cleanUpNowAndThen()
  return decision
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

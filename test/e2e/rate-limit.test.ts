import { randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { Logger } from '@aws-lambda-powertools/logger'
import middy from '@middy/core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { signAccessToken } from '../../lib/auth.ts'
import { resetConfig } from '../../lib/config.ts'
import { closePool, query } from '../../lib/db.ts'
import { notFound } from '../../lib/errors.ts'
import type { ApiEvent, ApiResult, ServiceContext } from '../../lib/http.ts'
import { json } from '../../lib/http.ts'
import { authenticate } from '../../lib/middleware/authenticate.ts'
import { clientIp } from '../../lib/middleware/client-ip.ts'
import { correlation } from '../../lib/middleware/correlation.ts'
import { problemErrors } from '../../lib/middleware/problem-errors.ts'
import { rateLimit, rateLimitHeaders } from '../../lib/middleware/rate-limit.ts'
import { securityHeaders } from '../../lib/middleware/security-headers.ts'
import {
  checkRateLimit,
  type RatePolicy,
  ratePolicy,
  removeFullBuckets,
} from '../../lib/rate-limit.ts'
import { findFreePort } from '../../local/embedded.ts'
import { apiEvent, lambdaContext } from '../support/lambda.ts'

type Middleware = middy.MiddlewareObj<ApiEvent, ApiResult, Error, ServiceContext>

const SETTINGS = {
  RATE_LIMIT_LOGIN: '10/60',
  RATE_LIMIT_DOCUMENTS: '5/60',
  RATE_LIMIT_IP_CEILING: '600/60',
  // Two per second: short enough to watch the real clock refill a bucket.
  RATE_LIMIT_REFRESH: '2/1',
  // 400 checks at once should meet in PostgreSQL, not queue in a small pool.
  DATABASE_POOL_MAX: '40',
} as const

const logger = new Logger({ serviceName: 'docservice', logLevel: 'SILENT' })

let addressCounter = 0

/** A fresh client address (198.18.0.0/15, the benchmarking range) for each use. */
function freshIp(): string {
  addressCounter += 1
  const [a = 0, b = 0] = randomBytes(2)
  return `198.${18 + (a & 1)}.${b}.${addressCounter % 250}`
}

/**
 * A handler behind the service's middleware, in the order lib/http.ts uses, with the
 * given limits after the client IP. It counts the calls that reach it.
 */
function limitedHandler(
  limits: Middleware[],
  answer: () => ApiResult = () => json(200, {}),
) {
  const chain = middy<ApiEvent, ApiResult, Error, ServiceContext>()
    .use(correlation(logger))
    .use(securityHeaders())
    .use(rateLimitHeaders())
    .use(problemErrors())
    .use(clientIp())
  for (const limit of limits) chain.use(limit)

  const reached = { count: 0 }
  const handler = chain.handler(async function endpoint() {
    reached.count += 1
    return answer()
  })
  return { handler, reached }
}

function call(
  handler: ReturnType<typeof limitedHandler>['handler'],
  sourceIp: string,
  headers: Record<string, string> = {},
): Promise<ApiResult> {
  return handler(
    apiEvent('POST /auth/login', { headers }, sourceIp),
    lambdaContext('rate-limit-test') as ServiceContext,
  )
}

function statusCounts(results: ApiResult[]): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const result of results) {
    const status = result.statusCode ?? 0
    counts[status] = (counts[status] ?? 0) + 1
  }
  return counts
}

type BucketRow = { fill: number; updated_at: Date; full_at: Date }

async function bucket(key: string): Promise<BucketRow | undefined> {
  const { rows } = await query<BucketRow>(
    'SELECT fill::float8 AS fill, updated_at, full_at FROM rate_limit_buckets WHERE key = $1',
    [key],
  )
  return rows[0]
}

/** What the headers must say for a bucket row: whole tokens, seconds to the next. */
function expectedState(row: BucketRow, policy: { quota: number; windowSeconds: number }) {
  const perToken = policy.windowSeconds * 1_000_000
  const remaining = Math.floor(row.fill / perToken)
  const full = row.fill >= policy.quota * perToken
  const nextMicros = full
    ? 0
    : Math.ceil(((remaining + 1) * perToken - row.fill) / policy.quota)
  return { remaining, seconds: Math.ceil(nextMicros / 1_000_000) }
}

const saved: Record<string, string | undefined> = {}

beforeAll(() => {
  for (const [name, value] of Object.entries(SETTINGS)) {
    saved[name] = process.env[name]
    process.env[name] = value
  }
  resetConfig()
})

afterAll(async () => {
  await closePool()
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name]
    else process.env[name] = value
  }
  resetConfig()
})

describe('the rate limit middleware against PostgreSQL', () => {
  it('keeps its buckets in an unlogged table', async () => {
    const { rows } = await query<{ relpersistence: string }>(
      "SELECT relpersistence FROM pg_class WHERE relname = 'rate_limit_buckets'",
    )

    expect(rows).toEqual([{ relpersistence: 'u' }])
  })

  it('lets exactly 10 of 400 concurrent login attempts from one address through', async () => {
    const { handler, reached } = limitedHandler([rateLimit('login')])
    const ip = freshIp()

    const results = await Promise.all(
      Array.from({ length: 400 }, () => call(handler, ip)),
    )

    expect(statusCounts(results)).toEqual({ 200: 10, 429: 390 })
    expect(reached.count).toBe(10)
  })

  it('keeps a client rotating X-Forwarded-For from an untrusted peer in one bucket', async () => {
    const { handler, reached } = limitedHandler([rateLimit('login')])
    const peer = freshIp()
    const claimed = Array.from({ length: 15 }, () => freshIp())

    const results: ApiResult[] = []
    for (const [index, address] of claimed.entries()) {
      const header = index % 2 === 0 ? address : `${address}, 127.0.0.1`
      results.push(await call(handler, peer, { 'x-forwarded-for': header }))
    }

    expect(results.map((result) => result.statusCode)).toEqual([
      ...Array(10).fill(200),
      ...Array(5).fill(429),
    ])
    expect(reached.count).toBe(10)
    const claimedKeys = claimed.map((address) => `login:ip:${address}`)
    const stray = await query('SELECT key FROM rate_limit_buckets WHERE key = ANY($1)', [
      claimedKeys,
    ])
    expect(stray.rowCount).toBe(0)
    expect(await bucket(`login:ip:${peer}`)).toBeDefined()
  })

  it('gives two clients behind a trusted proxy separate buckets', async () => {
    const { handler } = limitedHandler([rateLimit('login')])
    const [first, second] = [freshIp(), freshIp()]
    const via = (client: string) => ({ 'x-forwarded-for': `${client}, 192.168.7.7` })

    const firstResults = await Promise.all(
      Array.from({ length: 11 }, () => call(handler, '127.0.0.1', via(first))),
    )
    const secondResults = await Promise.all(
      Array.from({ length: 10 }, () => call(handler, '127.0.0.1', via(second))),
    )

    expect(statusCounts(firstResults)).toEqual({ 200: 10, 429: 1 })
    expect(statusCounts(secondResults)).toEqual({ 200: 10 })
  })

  it('puts every address of one IPv6 /64 in one bucket', async () => {
    const { handler } = limitedHandler([rateLimit('login')])
    const prefix = `2001:db8:${randomBytes(2).toString('hex')}:${randomBytes(2).toString('hex')}`

    const results: ApiResult[] = []
    for (let host = 1; host <= 11; host += 1) {
      results.push(await call(handler, `${prefix}:${host.toString(16)}::${host}`))
    }

    expect(statusCounts(results)).toEqual({ 200: 10, 429: 1 })
  })

  it('follows an account across addresses', async () => {
    const { rows } = await query<{ id: string }>(
      "INSERT INTO users (email, password_hash, quota_bytes) VALUES ($1, 'unused', 0) RETURNING id",
      [`limits-${randomUUID()}@example.test`],
    )
    const userId = rows[0]?.id as string
    const { token } = await signAccessToken({ userId, role: 'user' })
    const { handler, reached } = limitedHandler([
      rateLimit('ip-ceiling'),
      authenticate({ limit: 'documents' }),
    ])
    const headers = { authorization: `Bearer ${token}` }

    const results: ApiResult[] = []
    for (let attempt = 0; attempt < 6; attempt += 1) {
      results.push(await call(handler, freshIp(), headers))
    }

    expect(results.map((result) => result.statusCode)).toEqual([
      200, 200, 200, 200, 200, 429,
    ])
    expect(reached.count).toBe(5)
    const refused = results[5] as ApiResult
    expect(JSON.parse(refused.body ?? '{}')).toMatchObject({
      code: 'rate_limited',
      policy: 'documents',
    })
    expect(refused.headers?.['ratelimit-policy']).toBe(
      '"ip-ceiling";q=600;w=60, "documents";q=5;w=60',
    )
    expect(refused.headers?.ratelimit).toMatch(
      /^"ip-ceiling";r=599;t=\d+, "documents";r=0;t=\d+$/,
    )
  })

  it("takes nothing from an account's bucket for a revoked token", async () => {
    const { rows } = await query<{ id: string }>(
      "INSERT INTO users (email, password_hash, quota_bytes) VALUES ($1, 'unused', 0) RETURNING id",
      [`limits-${randomUUID()}@example.test`],
    )
    const userId = rows[0]?.id as string
    const revoked = await signAccessToken({ userId, role: 'user', version: 0 })
    await query('UPDATE users SET token_version = 1 WHERE id = $1', [userId])
    const current = await signAccessToken({ userId, role: 'user', version: 1 })
    const { handler } = limitedHandler([authenticate({ limit: 'documents' })])

    const refused = await Promise.all(
      Array.from({ length: 8 }, () =>
        call(handler, freshIp(), { authorization: `Bearer ${revoked.token}` }),
      ),
    )
    const allowed: ApiResult[] = []
    for (let attempt = 0; attempt < 5; attempt += 1) {
      allowed.push(
        await call(handler, freshIp(), { authorization: `Bearer ${current.token}` }),
      )
    }

    expect(statusCounts(refused)).toEqual({ 401: 8 })
    expect(statusCounts(allowed)).toEqual({ 200: 5 })
    expect(allowed.at(-1)?.headers?.ratelimit).toMatch(/^"documents";r=0;t=\d+$/)
  })

  it('answers headers and Retry-After that match the bucket state', async () => {
    const policy = ratePolicy('login')
    const { handler } = limitedHandler([rateLimit('login')])
    const ip = freshIp()

    const third = await Promise.all([call(handler, ip), call(handler, ip)]).then(() =>
      call(handler, ip),
    )
    const afterThird = expectedState(
      (await bucket(`login:ip:${ip}`)) as BucketRow,
      policy,
    )
    for (let index = 0; index < 7; index += 1) await call(handler, ip)
    const refused = await call(handler, ip)
    const afterRefusal = expectedState(
      (await bucket(`login:ip:${ip}`)) as BucketRow,
      policy,
    )

    expect(third.statusCode).toBe(200)
    expect(third.headers?.['ratelimit-policy']).toBe('"login";q=10;w=60')
    expect(afterThird.remaining).toBe(7)
    expect(third.headers?.ratelimit).toBe(`"login";r=7;t=${afterThird.seconds}`)

    expect(refused.statusCode).toBe(429)
    expect(afterRefusal.remaining).toBe(0)
    expect(afterRefusal.seconds).toBeGreaterThan(0)
    expect(refused.headers?.ratelimit).toBe(`"login";r=0;t=${afterRefusal.seconds}`)
    expect(refused.headers?.['retry-after']).toBe(String(afterRefusal.seconds))
    expect(refused.headers?.['content-type']).toBe('application/problem+json')
    expect(refused.headers?.['x-correlation-id']).toBeTruthy()
    expect(refused.headers?.['x-content-type-options']).toBe('nosniff')
    expect(JSON.parse(refused.body ?? '{}')).toMatchObject({
      status: 429,
      code: 'rate_limited',
      retryAfterSeconds: afterRefusal.seconds,
    })
  })

  it('writes the headers on an error the endpoint raises after the check', async () => {
    const { handler } = limitedHandler([rateLimit('login')], () => {
      throw notFound()
    })

    const result = await call(handler, freshIp())

    expect(result.statusCode).toBe(404)
    expect(result.headers?.['ratelimit-policy']).toBe('"login";q=10;w=60')
    expect(result.headers?.ratelimit).toBe('"login";r=9;t=6')
  })
})

describe('the token bucket', () => {
  const login: RatePolicy = {
    name: 'login',
    quota: 10,
    windowSeconds: 60,
    failClosed: true,
  }
  // A day ahead: no cleanup on the real clock can reach these buckets meanwhile.
  const start = Date.now() + 86_400_000
  const at = (seconds: number) => ({ at: new Date(start + seconds * 1000) })

  it('refills one token every window / quota seconds, up to the quota', async () => {
    const subject = `test:${randomUUID()}`

    const burst = []
    for (let index = 0; index < 11; index += 1) {
      burst.push(await checkRateLimit(login, subject, at(0)))
    }
    const early = await checkRateLimit(login, subject, at(5.999))
    const onTime = await checkRateLimit(login, subject, at(6))
    const halfWindowLater = await checkRateLimit(login, subject, at(36))
    const hourLater = await checkRateLimit(login, subject, at(3636))

    expect(burst.map((decision) => decision.remaining)).toEqual([
      9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0,
    ])
    expect(burst.map((decision) => decision.allowed)).toEqual([
      ...Array(10).fill(true),
      false,
    ])
    expect(burst[10]?.nextTokenSeconds).toBe(6)
    expect(early).toEqual({ allowed: false, remaining: 0, nextTokenSeconds: 0.001 })
    expect(onTime).toEqual({ allowed: true, remaining: 0, nextTokenSeconds: 6 })
    expect(halfWindowLater).toEqual({ allowed: true, remaining: 4, nextTokenSeconds: 6 })
    expect(hourLater).toEqual({ allowed: true, remaining: 9, nextTokenSeconds: 6 })
  })

  it('gives concurrent checks of one bucket its tokens one at a time', async () => {
    const subject = `test:${randomUUID()}`

    // Made in one turn of the event loop, the twelve checks go out as one batch.
    const decisions = await Promise.all(
      Array.from({ length: 12 }, () => checkRateLimit(login, subject, at(0))),
    )

    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(10)
    expect(decisions.map((decision) => decision.remaining).sort((a, b) => b - a)).toEqual(
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0],
    )
    for (const decision of decisions.filter((each) => !each.allowed))
      expect(decision.nextTokenSeconds).toBe(6)
  })

  it('answers each check of a mixed batch from its own bucket', async () => {
    const drained = `test:${randomUUID()}`
    const fresh = `test:${randomUUID()}`
    for (let index = 0; index < 10; index += 1)
      await checkRateLimit(login, drained, at(0))

    const decisions = await Promise.all(
      [drained, fresh, drained, fresh].map((subject) =>
        checkRateLimit(login, subject, at(1)),
      ),
    )

    expect(decisions.map((decision) => decision.allowed)).toEqual([
      false,
      true,
      false,
      true,
    ])
    expect(decisions.map((decision) => decision.remaining)).toEqual([0, 9, 0, 8])
  })

  it('never lets a refused request cost a token', async () => {
    const subject = `test:${randomUUID()}`
    for (let index = 0; index < 10; index += 1)
      await checkRateLimit(login, subject, at(0))

    for (let index = 0; index < 50; index += 1)
      await checkRateLimit(login, subject, at(3))
    const next = await checkRateLimit(login, subject, at(6))

    expect(next.allowed).toBe(true)
  })

  it('records when the bucket is full again', async () => {
    const subject = `test:${randomUUID()}`

    await checkRateLimit(login, subject, at(0))
    await checkRateLimit(login, subject, at(0))
    const row = await bucket(`login:${subject}`)

    expect(row?.full_at.getTime()).toBe(start + 12_000)
  })

  it('removes buckets that are full again and keeps the others', async () => {
    const idle = `test:${randomUUID()}`
    const busy = `test:${randomUUID()}`
    await checkRateLimit(login, idle, { at: new Date(Date.now() - 86_400_000) })
    await checkRateLimit(login, busy, at(0))

    await removeFullBuckets()

    expect(await bucket(`login:${idle}`)).toBeUndefined()
    expect(await bucket(`login:${busy}`)).toBeDefined()
  })

  it('refills on the database clock', async () => {
    const policy = ratePolicy('refresh')
    const subject = `test:${randomUUID()}`
    await checkRateLimit(policy, subject)
    await checkRateLimit(policy, subject)

    const refused = await checkRateLimit(policy, subject)
    const refusedAt = performance.now()
    const deadline = refusedAt + 3_000
    let allowed = false
    while (!allowed && performance.now() < deadline) {
      await delay(25)
      allowed = (await checkRateLimit(policy, subject)).allowed
    }
    const waited = performance.now() - refusedAt

    expect(refused.allowed).toBe(false)
    expect(refused.nextTokenSeconds).toBeGreaterThan(0)
    expect(refused.nextTokenSeconds).toBeLessThanOrEqual(0.5)
    expect(allowed).toBe(true)
    expect(waited).toBeGreaterThanOrEqual(refused.nextTokenSeconds * 1000 - 50)
  })
})

describe('when PostgreSQL cannot answer', () => {
  const databaseUrl = process.env.DATABASE_URL

  beforeAll(async () => {
    await closePool()
    const url = new URL(databaseUrl ?? '')
    url.port = String(await findFreePort())
    process.env.DATABASE_URL = url.toString()
    resetConfig()
  })

  afterAll(async () => {
    await closePool()
    process.env.DATABASE_URL = databaseUrl
    resetConfig()
  })

  it('refuses an auth endpoint with 503 before its handler runs', async () => {
    const { handler, reached } = limitedHandler([rateLimit('login')])

    const result = await call(handler, freshIp())

    expect(result.statusCode).toBe(503)
    expect(JSON.parse(result.body ?? '{}')).toMatchObject({
      code: 'rate_limit_unavailable',
    })
    expect(result.headers?.['retry-after']).toBeDefined()
    expect(reached.count).toBe(0)
  })

  it('lets other endpoints through, with one warning for many requests', async () => {
    const warn = vi.spyOn(logger, 'warn')
    const { handler, reached } = limitedHandler([rateLimit('ip-ceiling')])

    const results: ApiResult[] = []
    for (let attempt = 0; attempt < 5; attempt += 1)
      results.push(await call(handler, freshIp()))

    expect(statusCounts(results)).toEqual({ 200: 5 })
    expect(reached.count).toBe(5)
    expect(results[0]?.headers?.ratelimit).toBeUndefined()
    const warnings = warn.mock.calls.filter(
      ([message]) => message === 'rate limit not checked, requests let through',
    )
    expect(warnings).toEqual([
      [
        'rate limit not checked, requests let through',
        expect.objectContaining({ policy: 'ip-ceiling', unchecked_requests: 1 }),
      ],
    ])
    warn.mockRestore()
  })
})

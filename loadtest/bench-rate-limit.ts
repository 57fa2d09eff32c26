/**
 * Measures the rate-limit check (lib/rate-limit.ts) against an embedded PostgreSQL on
 * loopback that it starts and removes itself: the cost of one check as a request sees it
 * (round trip included), and how many checks per second one process gets through, on one
 * hot key and spread over many keys.
 *
 *   npm run bench:rate-limit -- [--seconds 3] [--concurrency 16] [--keys 100000]
 */
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { resetConfig } from '../lib/config.ts'
import { closePool, getPool } from '../lib/db.ts'
import { migrate } from '../lib/migrate.ts'
import { checkRateLimit, type RatePolicy } from '../lib/rate-limit.ts'
import { startEmbeddedPostgres } from '../local/embedded.ts'

// A ceiling on each phase besides its duration, so a very fast machine stays bounded too.
const MAX_CHECKS_PER_PHASE = 2_000_000

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '16' },
    keys: { type: 'string', default: '100000' },
  },
})
const seconds = Math.min(30, Math.max(1, Number(args.seconds)))
const concurrency = Math.min(64, Math.max(1, Number(args.concurrency)))
const keyCount = Math.min(10_000_000, Math.max(1, Number(args.keys)))

// The login policy's numbers: on the hot key almost every check is a refusal, which
// costs the same statement as an allowance.
const policy: RatePolicy = {
  name: 'login',
  quota: 10,
  windowSeconds: 60,
  failClosed: true,
}

type Phase = { name: string; concurrency: number; subject: () => string }

type Result = {
  name: string
  concurrency: number
  checks: number
  allowed: number
  perSecond: number
  medianMicros: number
  p99Micros: number
}

function percentile(sorted: Float64Array, fraction: number): number {
  const index = Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))
  return sorted[index] ?? 0
}

async function runPhase(phase: Phase): Promise<Result> {
  const latencies = new Float64Array(MAX_CHECKS_PER_PHASE)
  let checks = 0
  let allowed = 0
  const started = performance.now()
  const deadline = started + seconds * 1000

  async function loop(): Promise<void> {
    while (performance.now() < deadline && checks < MAX_CHECKS_PER_PHASE) {
      const before = performance.now()
      const decision = await checkRateLimit(policy, phase.subject())
      latencies[checks] = (performance.now() - before) * 1000
      checks += 1
      if (decision.allowed) allowed += 1
    }
  }
  await Promise.all(Array.from({ length: phase.concurrency }, loop))
  const elapsed = (performance.now() - started) / 1000

  const sorted = latencies.subarray(0, checks).sort()
  return {
    name: phase.name,
    concurrency: phase.concurrency,
    checks,
    allowed,
    perSecond: Math.round(checks / elapsed),
    medianMicros: Math.round(percentile(sorted, 0.5)),
    p99Micros: Math.round(percentile(sorted, 0.99)),
  }
}

function printResults(results: Result[]): void {
  const rows = results.map((result) => ({
    phase: result.name,
    concurrency: result.concurrency,
    checks: result.checks,
    allowed: result.allowed,
    'checks/s': result.perSecond,
    'median µs': result.medianMicros,
    'p99 µs': result.p99Micros,
  }))
  console.table(rows)
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'docservice-bench-'))
  // Under root, PostgreSQL runs as an unprivileged user that must be able to enter it.
  await chmod(root, 0o755)
  const postgres = await startEmbeddedPostgres({
    dataDir: path.join(root, 'postgres'),
    ephemeral: true,
  })

  try {
    Object.assign(process.env, {
      DATABASE_URL: postgres.url,
      DATABASE_POOL_MAX: String(concurrency),
      JWT_SECRET: randomBytes(48).toString('base64url'),
    })
    resetConfig()
    await migrate(getPool())

    const hotKey = () => 'ip:198.18.0.1'
    const keys = Array.from({ length: keyCount }, (_, index) => `ip:key-${index}`)
    const anyKey = () => keys[Math.floor(Math.random() * keys.length)] as string

    console.log(
      `rate-limit check on PostgreSQL (loopback, pool ${concurrency}), ` +
        `${seconds} s per phase, ${keyCount} keys in the spread phases`,
    )
    // Open every pool connection and prepare the statement on it before measuring.
    const warmUp = async () => {
      for (let index = 0; index < 50; index += 1) await checkRateLimit(policy, anyKey())
    }
    await Promise.all(Array.from({ length: concurrency }, warmUp))

    const results: Result[] = []
    for (const phase of [
      { name: 'hot key, one at a time', concurrency: 1, subject: hotKey },
      { name: 'many keys, one at a time', concurrency: 1, subject: anyKey },
      { name: 'hot key, concurrent', concurrency, subject: hotKey },
      { name: 'many keys, concurrent', concurrency, subject: anyKey },
    ]) {
      results.push(await runPhase(phase))
    }
    printResults(results)
  } finally {
    await closePool()
    await postgres.stop()
    await rm(root, { recursive: true, force: true })
  }
}

await main()

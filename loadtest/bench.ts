/**
 * Gateway throughput with autocannon, every figure printed beside its target (issue 6):
 *
 * 1. `GET /health` (a handler that does no I/O) through the gateway, 50 connections,
 *    3 runs of 15 s, median; interleaved with the same runs against a bare `node:http`
 *    server calling the same handler (loadtest/bare-server.ts), the baseline, and with
 *    the gateway run again with LOG_LEVEL=SILENT (what its two log lines cost).
 * 2. Flatness: `GET /health` for 2 minutes, right after the runs above; requests per
 *    10-s interval and the gateway's RSS each second.
 * 3. `GET /documents` with authentication and both rate-limit checks, through the
 *    gateway, against an embedded PostgreSQL; the per-account and per-IP limits are
 *    raised by configuration so that the bench measures the checks, not refusals.
 *
 * Servers run in their own processes on 127.0.0.1 (autocannon takes this one); nothing
 * else is ever a target. Bounded: about 6 minutes with the defaults.
 *
 *   npm run bench -- [--seconds 15] [--runs 3] [--flat-seconds 120] [--profile]
 *                    [--only health|documents]
 *
 * `--profile` writes V8 CPU profiles of the gateway (node --cpu-prof) next to the
 * results, in loadtest/reports/bench-<timestamp>/.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { resetConfig } from '../lib/config.ts'
import { closePool, getPool } from '../lib/db.ts'
import { migrate } from '../lib/migrate.ts'
import { ensureBucket, resetStorage } from '../lib/storage.ts'
import {
  findFreePort,
  startEmbeddedPostgres,
  startEmbeddedS3,
} from '../local/embedded.ts'
import { GATEWAY_NODE_FLAGS } from '../local/runtime.ts'
import { readUsage } from './procfs.ts'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '..')
const HOST = '127.0.0.1'
const CONNECTIONS = 50
const WARM_UP_SECONDS = 3
const DOCUMENTS = 20
const CORPUS_FILE = path.resolve(
  ROOT,
  '..',
  'shared',
  'corpus',
  'docs',
  'minimal-document.pdf',
)

const TARGETS = {
  healthPerSecond: 25_000,
  healthP99Ms: 5,
  listPerSecond: 3_000,
  listP99Ms: 50,
  rssMiB: 200,
  // No 10-s interval of the flatness run below this share of the median interval.
  flatShare: 0.85,
}

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    runs: { type: 'string', default: '3' },
    'flat-seconds': { type: 'string', default: '120' },
    profile: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
})
if (args.only !== undefined && !['health', 'documents'].includes(args.only)) {
  console.error('--only takes health or documents')
  process.exit(2)
}
const measureHealth = args.only !== 'documents'
const measureDocuments = args.only !== 'health'
const seconds = clamp(Number(args.seconds), 1, 60)
const runs = clamp(Number(args.runs), 1, 5)
const flatSeconds = clamp(Number(args['flat-seconds']), 10, 300)

type Server = { url: string; pid: number; stop(): Promise<void> }
type Run = { perSecond: number; p50: number; p99: number; non2xx: number; errors: number }

function clamp(value: number, min: number, max: number): number {
  return Number.isFinite(value) ? Math.min(max, Math.max(min, Math.round(value))) : min
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}

async function waitUntilUp(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url} exited with ${child.exitCode}`)
    const ok = await fetch(`${url}/health`)
      .then((response) => response.ok)
      .catch(() => false)
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`${url} did not answer within 60 s`)
}

/** A server in its own process; its logs go nowhere (they are written, not kept). */
async function startServer(
  script: string,
  env: NodeJS.ProcessEnv,
  nodeArgs: string[],
): Promise<Server> {
  const port = await findFreePort()
  const child = spawn(process.execPath, [...nodeArgs, path.join(ROOT, script)], {
    cwd: ROOT,
    env: { ...env, HOST, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const url = `http://${HOST}:${port}`
  await waitUntilUp(url, child)
  return {
    url,
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(timer)
    },
  }
}

async function cannon(
  url: string,
  duration: number,
  headers: Record<string, string> = {},
  onTick?: (requests: number) => void,
): Promise<Run> {
  const instance = autocannon({ url, connections: CONNECTIONS, duration, headers })
  if (onTick) {
    instance.on('tick', (counter: { counter: number }) => onTick(counter.counter))
  }
  const result = await instance
  return {
    perSecond: Math.round(result.requests.total / duration),
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  }
}

function medianRun(list: Run[]): Run {
  return {
    perSecond: median(list.map((run) => run.perSecond)),
    p50: median(list.map((run) => run.p50)),
    p99: median(list.map((run) => run.p99)),
    non2xx: list.reduce((sum, run) => sum + run.non2xx, 0),
    errors: list.reduce((sum, run) => sum + run.errors, 0),
  }
}

async function setUpAccount(gateway: string): Promise<string> {
  const email = `bench-${randomBytes(4).toString('hex')}@bench.example`
  const password = randomBytes(18).toString('base64url')
  const json = { 'content-type': 'application/json' }
  const registered = await fetch(`${gateway}/auth/register`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({ email, password }),
  })
  if (registered.status !== 201) throw new Error(`register answered ${registered.status}`)
  const login = await fetch(`${gateway}/auth/login`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({ email, password }),
  })
  const { accessToken } = (await login.json()) as { accessToken: string }

  // A full first page, as a user with documents sees it.
  const file = await readFile(CORPUS_FILE)
  for (let index = 0; index < DOCUMENTS; index += 1) {
    const form = new FormData()
    form.append('file', new Blob([file], { type: 'application/pdf' }), `doc-${index}.pdf`)
    const upload = await fetch(`${gateway}/documents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}` },
      body: form,
    })
    if (upload.status !== 201) throw new Error(`upload answered ${upload.status}`)
  }
  return accessToken
}

function line(name: string, measured: string, target: string, passed?: boolean): string {
  const verdict = passed === undefined ? '' : passed ? 'ok' : 'MISSED'
  return `${name.padEnd(46)} ${measured.padStart(14)}   ${target.padEnd(14)} ${verdict}`
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((value) => value.toFixed(2))
    .join(' ')
}

type Servers = { gateway: Server; bare: Server; quiet: Server }

/** The no-I/O figures: gateway against the bare baseline, then the flatness run. */
async function healthFigures({ gateway, bare, quiet }: Servers): Promise<string[]> {
  await cannon(`${bare.url}/health`, WARM_UP_SECONDS)
  await cannon(`${gateway.url}/health`, WARM_UP_SECONDS)
  await cannon(`${quiet.url}/health`, WARM_UP_SECONDS)
  const bareRuns: Run[] = []
  const healthRuns: Run[] = []
  const quietRuns: Run[] = []
  for (let run = 0; run < runs; run += 1) {
    bareRuns.push(await cannon(`${bare.url}/health`, seconds))
    healthRuns.push(await cannon(`${gateway.url}/health`, seconds))
    quietRuns.push(await cannon(`${quiet.url}/health`, seconds))
    console.log(
      `  run ${run + 1}: bare ${bareRuns.at(-1)?.perSecond}/s, ` +
        `gateway ${healthRuns.at(-1)?.perSecond}/s, ` +
        `gateway without logs ${quietRuns.at(-1)?.perSecond}/s`,
    )
  }
  const health = medianRun(healthRuns)
  const baseline = medianRun(bareRuns)
  const silent = medianRun(quietRuns)

  return [
    line(
      'GET /health via gateway, req/s (median)',
      String(health.perSecond),
      `≥ ${TARGETS.healthPerSecond}`,
      health.perSecond >= TARGETS.healthPerSecond,
    ),
    line(
      'GET /health via gateway, p99 ms',
      String(health.p99),
      `≤ ${TARGETS.healthP99Ms}`,
      health.p99 <= TARGETS.healthP99Ms,
    ),
    line('GET /health via gateway, p50 ms', String(health.p50), ''),
    line(
      'GET /health via gateway, LOG_LEVEL=SILENT',
      `${silent.perSecond}, p99 ${silent.p99}`,
      'diagnostic',
    ),
    line('bare node:http + same handler, req/s', String(baseline.perSecond), 'baseline'),
    line('bare node:http + same handler, p99 ms', String(baseline.p99), 'baseline'),
    line(
      'gateway share of the bare baseline',
      `${Math.round((health.perSecond / Math.max(1, baseline.perSecond)) * 100)} %`,
      '',
    ),
    line('non-2xx answers, errors', failures(healthRuns), '0, 0'),
    ...(await flatnessFigures(gateway)),
  ]
}

/** `GET /health` for the flatness period: requests per 10 s and RSS each second. */
async function flatnessFigures(gateway: Server): Promise<string[]> {
  const perSecond: number[] = []
  const rss: number[] = []
  const rssTimer = setInterval(
    () => rss.push(readUsage([gateway.pid]).rssBytes / 2 ** 20),
    1_000,
  )
  const flat = await cannon(`${gateway.url}/health`, flatSeconds, {}, (requests) =>
    perSecond.push(requests),
  )
  clearInterval(rssTimer)

  const intervals: number[] = []
  for (let start = 0; start + 10 <= perSecond.length; start += 10) {
    const slice = perSecond.slice(start, start + 10)
    intervals.push(Math.round(slice.reduce((sum, value) => sum + value, 0) / 10))
  }
  const lowest = Math.min(...intervals)
  const third = Math.ceil(intervals.length / 3)
  const mean = (values: number[]) =>
    values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length)
  const maxRss = Math.max(...rss)

  return [
    line(
      `flatness ${flatSeconds} s: req/s per 10 s`,
      `${lowest}..${Math.max(...intervals)}`,
      `≥ ${Math.round(TARGETS.flatShare * 100)} % of median`,
      lowest >= median(intervals) * TARGETS.flatShare,
    ),
    line(
      'flatness: last third vs first third',
      `${Math.round((mean(intervals.slice(-third)) / Math.max(1, mean(intervals.slice(0, third)))) * 100)} %`,
      '',
    ),
    line('flatness: req/s overall, p99 ms', `${flat.perSecond}, ${flat.p99}`, ''),
    line(
      'flatness: gateway max RSS MiB',
      maxRss.toFixed(0),
      `< ${TARGETS.rssMiB}`,
      maxRss < TARGETS.rssMiB,
    ),
    line(
      'flatness: gateway RSS first → last second',
      `${rss[0]?.toFixed(0)} → ${rss.at(-1)?.toFixed(0)}`,
      '',
    ),
    line('flatness: non-2xx answers, errors', failures([flat]), '0, 0'),
    `per-10-s intervals: ${intervals.join(' ')}`,
  ]
}

/** `GET /documents` with authentication and both rate-limit checks. */
async function documentsFigures(gateway: Server): Promise<string[]> {
  const token = await setUpAccount(gateway.url)
  const auth = { authorization: `Bearer ${token}` }
  await cannon(`${gateway.url}/documents`, WARM_UP_SECONDS, auth)
  const listRuns: Run[] = []
  for (let run = 0; run < runs; run += 1) {
    listRuns.push(await cannon(`${gateway.url}/documents`, seconds, auth))
    console.log(`  run ${run + 1}: GET /documents ${listRuns.at(-1)?.perSecond}/s`)
  }
  const list = medianRun(listRuns)

  return [
    line(
      'GET /documents (auth + limits), req/s',
      String(list.perSecond),
      `≥ ${TARGETS.listPerSecond}`,
      list.perSecond >= TARGETS.listPerSecond,
    ),
    line(
      'GET /documents (auth + limits), p99 ms',
      String(list.p99),
      `≤ ${TARGETS.listP99Ms}`,
      list.p99 <= TARGETS.listP99Ms,
    ),
    line('GET /documents (auth + limits), p50 ms', String(list.p50), ''),
    line('GET /documents: non-2xx answers, errors', failures(listRuns), '0, 0'),
  ]
}

function failures(list: Run[]): string {
  const non2xx = list.reduce((sum, run) => sum + run.non2xx, 0)
  const errors = list.reduce((sum, run) => sum + run.errors, 0)
  return `${non2xx}, ${errors}`
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'docservice-bench-'))
  // Under root, PostgreSQL runs as an unprivileged user that must be able to enter it.
  await chmod(root, 0o755)
  const outDir = path.join(
    HERE,
    'reports',
    `bench-${new Date().toISOString().replaceAll(':', '-')}`,
  )
  if (args.profile) await mkdir(outDir, { recursive: true })
  const loadBefore = loadAverage()

  const postgres = await startEmbeddedPostgres({
    dataDir: path.join(root, 'postgres'),
    ephemeral: true,
  })
  const s3 = await startEmbeddedS3({ dataDir: path.join(root, 's3') })
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: postgres.url,
    S3_ENDPOINT: s3.url,
    JWT_SECRET: randomBytes(48).toString('base64url'),
    // Raised for the bench: 50 connections on one account and one address.
    RATE_LIMIT_DOCUMENTS: '999999/1',
    RATE_LIMIT_IP_CEILING: '999999/1',
  }
  Object.assign(process.env, env)
  resetConfig()
  await migrate(getPool())
  await ensureBucket()
  await closePool()

  const profileArgs = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${outDir}`] : []
  const started: Server[] = []
  try {
    const gateway = await startServer('local/gateway.ts', env, [
      ...GATEWAY_NODE_FLAGS,
      ...profileArgs,
    ])
    started.push(gateway)
    const bare = await startServer('loadtest/bare-server.ts', env, [])
    started.push(bare)
    // The same gateway with logging off, to show what the two access lines cost.
    const quiet = await startServer('local/gateway.ts', { ...env, LOG_LEVEL: 'SILENT' }, [
      ...GATEWAY_NODE_FLAGS,
    ])
    started.push(quiet)

    console.log(
      `bench: ${CONNECTIONS} connections, ${runs} × ${seconds} s per figure (median), ` +
        `flatness ${flatSeconds} s; load average before: ${loadBefore}`,
    )
    const figures = [
      ...(measureHealth ? await healthFigures({ gateway, bare, quiet }) : []),
      ...(measureDocuments ? await documentsFigures(gateway) : []),
    ]
    const results = [
      '',
      line('figure', 'measured', 'target'),
      ...figures,
      '',
      `load average (1, 5, 15 min) before: ${loadBefore}; after: ${loadAverage()}`,
      `machine: ${os.cpus().length} × ${os.cpus()[0]?.model}, Node ${process.version}`,
    ]
    console.log(results.join('\n'))
    if (args.profile) {
      await writeFile(path.join(outDir, 'results.txt'), `${results.join('\n')}\n`)
    }
  } finally {
    for (const server of started) await server.stop()
    resetStorage()
    await s3.stop()
    await postgres.stop()
    await rm(root, { recursive: true, force: true })
  }
  if (args.profile) console.log(`profiles and results: ${outDir}`)
}

await main()

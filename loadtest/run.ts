/**
 * Runs the Artillery scenario (loadtest/scenario.yml) and writes its report.
 *
 * Without `--target` it starts the service as `npm start` does (embedded PostgreSQL and
 * S3, gateway and worker) in a temporary data directory on a free loopback port, samples
 * its CPU and memory, PostgreSQL's, Artillery's, and the extraction backlog, waits for
 * the backlog to drain after the run, stops everything it started, and writes
 * `loadtest/reports/<timestamp>/report.html` and `summary.md`.
 *
 *   npm run loadtest                  5-minute soak, 50 users
 *   npm run loadtest:smoke            the same scenario for about 30 s, 10 users
 *   npm run loadtest -- --target http://127.0.0.1:8000 [--database-url postgres://...]
 *   npm run loadtest -- --profile      also writes a CPU profile of the service
 *   npm run loadtest:smoke -- --file ../shared/corpus/docs/testocr.png   (OCR uploads)
 *
 * The exit code is 0 only when every threshold held and the backlog drained in time.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { findFreePort } from '../local/embedded.ts'
import { GATEWAY_NODE_FLAGS, readRuntime } from '../local/runtime.ts'
import { type CpuSample, processTree, sampleUsage } from './procfs.ts'
import { type LoadSample, makeReport, type RunInfo } from './report.ts'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '..')
const SCENARIO = path.join(HERE, 'scenario.yml')
const ARTILLERY = path.join(ROOT, 'node_modules', '.bin', 'artillery')
// The environment as given, before this process adds the database settings it reads.
const BASE_ENV = { ...process.env }

const START_TIMEOUT_MS = 90_000
const STOP_TIMEOUT_MS = 40_000
const SAMPLE_INTERVAL_MS = 1_000
const BACKLOG_INTERVAL_MS = 2_000
/** The backlog must be empty this long after the last virtual user finished. */
const DRAIN_LIMIT_MS = 120_000
// A run that hangs is cut: the soak is 5 min 20 s, the smoke about 35 s.
const ARTILLERY_LIMIT_MS = { soak: 10 * 60_000, smoke: 3 * 60_000 }

type Mode = 'soak' | 'smoke'

type Service = {
  url: string
  databaseUrl: string
  pid: number
  postgresPid: number
  stop(): Promise<void>
}

type Backlog = { at: number; queued: number; active: number }

const { values: args } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    target: { type: 'string' },
    'database-url': { type: 'string' },
    keep: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    file: { type: 'string' },
  },
})

function timestamp(): string {
  return new Date()
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replaceAll(':', '-')
}

/** Resolves with everything the child printed once `pattern` appears on its stdout. */
function waitForOutput(
  child: ChildProcess,
  pattern: RegExp,
  ms: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => {
      reject(
        new Error(`the service did not start within ${ms} ms:\n${seen.slice(-2000)}`),
      )
    }, ms)
    const onData = (chunk: Buffer) => {
      seen += chunk.toString('utf8')
      if (!pattern.test(seen)) return
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      resolve(seen)
    }
    child.stdout?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(
        new Error(`the service exited (${code}) while starting:\n${seen.slice(-2000)}`),
      )
    })
  })
}

/** The worker process npm start runs beside the gateway. */
function workerPids(servicePid: number): number[] {
  return processTree(servicePid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('local/worker.ts')
    } catch {
      return false
    }
  })
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}

/** `npm start` on the embedded defaults, in a fresh data directory and on a free port. */
async function startService(reportDir: string): Promise<Service> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'docservice-loadtest-'))
  // Under root, PostgreSQL runs as an unprivileged user that must be able to enter it.
  await chmod(root, 0o755)
  const dataDir = path.join(root, 'data')
  const port = await findFreePort()

  const env: NodeJS.ProcessEnv = { ...BASE_ENV, DATA_DIR: dataDir, PORT: String(port) }
  env.HOST = '127.0.0.1'
  delete env.DATABASE_URL
  delete env.S3_ENDPOINT
  // --profile: a V8 CPU profile of the service, written when it stops.
  const profile = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${reportDir}`] : []
  const child = spawn(
    process.execPath,
    [...GATEWAY_NODE_FLAGS, ...profile, path.join(ROOT, 'local', 'start.ts')],
    {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  const log = createWriteStream(path.join(reportDir, 'service.log'))
  child.stdout.pipe(log)
  child.stderr.pipe(log)

  const removeData = async () => {
    if (args.keep) console.log(`data directory kept: ${dataDir}`)
    else await rm(root, { recursive: true, force: true })
  }
  let runtime: Awaited<ReturnType<typeof readRuntime>>
  let postmaster: string
  try {
    await waitForOutput(child, /"message":"service started"/, START_TIMEOUT_MS)
    // Where the launcher put PostgreSQL (a free port, a generated password).
    runtime = await readRuntime(dataDir)
    if (!runtime) throw new Error(`the service wrote no runtime file in ${dataDir}`)
    postmaster = await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8')
  } catch (error) {
    await stopChild(child)
    await removeData()
    throw error
  }

  return {
    url: `http://127.0.0.1:${port}`,
    databaseUrl: runtime.DATABASE_URL,
    pid: child.pid as number,
    postgresPid: Number(postmaster.split('\n')[0]),
    stop: async () => {
      await stopChild(child)
      log.end()
      await removeData()
    },
  }
}

/**
 * One request to each route before the run, so that no user pays for a module's first
 * import (what Lambda calls a cold start); each answer is a refusal that costs nothing.
 */
async function warmUp(target: string): Promise<void> {
  const requests: [string, string][] = [
    ['GET', '/health'],
    ['POST', '/auth/register'],
    ['POST', '/auth/login'],
    ['GET', '/documents'],
    ['GET', '/documents/00000000-0000-4000-8000-000000000000'],
    ['POST', '/documents'],
  ]
  for (const [method, route] of requests) {
    const response = await fetch(new URL(route, target), {
      method,
      signal: AbortSignal.timeout(30_000),
    })
    await response.arrayBuffer()
  }
}

/** Reads the extraction backlog from PostgreSQL through the service's own queueStats(). */
async function connectBacklog(databaseUrl: string | undefined) {
  if (!databaseUrl) return undefined
  process.env.DATABASE_URL = databaseUrl
  process.env.JWT_SECRET ||= randomBytes(48).toString('base64url')
  process.env.DATABASE_POOL_MAX = '1'
  const { resetConfig } = await import('../lib/config.ts')
  resetConfig()
  const { queueStats } = await import('../lib/queue.ts')
  const { closePool, query } = await import('../lib/db.ts')

  return {
    read: async (): Promise<Backlog> => {
      const stats = await queueStats()
      return { at: Date.now(), queued: stats.queued, active: stats.active }
    },
    statuses: async (): Promise<Record<string, number>> => {
      const { rows } = await query<{ status: string; count: number }>(
        'SELECT status, count(*)::int AS count FROM documents GROUP BY status',
      )
      return Object.fromEntries(rows.map((row) => [row.status, row.count]))
    },
    close: closePool,
  }
}

const MEDIA_TYPES: Record<string, string> = {
  '.pdf': 'application/pdf',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.tiff': 'image/tiff',
  '.webp': 'image/webp',
}

/** Another file to upload than the scenario's own, e.g. a scan that needs OCR. */
function uploadVariables(file: string): string[] {
  const uploadFile = path.resolve(file)
  const uploadType = MEDIA_TYPES[path.extname(file).toLowerCase()]
  if (!uploadType) throw new Error(`--file must be a PDF, PNG, JPEG, TIFF or WebP file`)
  return ['--variables', JSON.stringify({ uploadFile, uploadType })]
}

async function runArtillery(
  mode: Mode,
  target: string,
  reportDir: string,
): Promise<{ pid: number; finished: Promise<number> }> {
  const output = path.join(reportDir, 'artillery.json')
  const variables = args.file ? uploadVariables(args.file) : []
  const child = spawn(
    ARTILLERY,
    [
      'run',
      '--environment',
      mode,
      '--target',
      target,
      '--output',
      output,
      ...variables,
      SCENARIO,
    ],
    {
      cwd: ROOT,
      // Artillery sends anonymous usage data unless told not to; nothing leaves here.
      env: { ...BASE_ENV, ARTILLERY_DISABLE_TELEMETRY: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  const log = createWriteStream(path.join(reportDir, 'artillery.log'))
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk)
      log.write(chunk)
    })
  }
  const timer = setTimeout(() => child.kill('SIGTERM'), ARTILLERY_LIMIT_MS[mode])
  const finished = once(child, 'exit').then(([code]) => {
    clearTimeout(timer)
    log.end()
    return typeof code === 'number' ? code : 1
  })
  return { pid: child.pid as number, finished }
}

async function pollBacklog(
  backlog: NonNullable<Awaited<ReturnType<typeof connectBacklog>>>,
  into: Backlog[],
  until: () => boolean,
): Promise<void> {
  while (!until()) {
    into.push(
      await backlog.read().catch(() => ({ at: Date.now(), queued: -1, active: -1 })),
    )
    await new Promise((resolve) => setTimeout(resolve, BACKLOG_INTERVAL_MS))
  }
}

async function drain(
  backlog: NonNullable<Awaited<ReturnType<typeof connectBacklog>>>,
  into: Backlog[],
): Promise<number | null> {
  const started = Date.now()
  while (Date.now() - started <= DRAIN_LIMIT_MS) {
    const now = await backlog.read()
    into.push(now)
    if (now.queued === 0 && now.active === 0) return (Date.now() - started) / 1000
    await new Promise((resolve) => setTimeout(resolve, 1_000))
  }
  return null
}

async function main(): Promise<number> {
  const mode: Mode = args.smoke ? 'smoke' : 'soak'
  const reportDir = path.join(HERE, 'reports', `${timestamp()}-${mode}`)
  await mkdir(reportDir, { recursive: true })

  const service = args.target ? undefined : await startService(reportDir)
  const target = args.target ?? (service as Service).url
  const backlog = await connectBacklog(args['database-url'] ?? service?.databaseUrl)
  const loads: LoadSample[] = []
  const backlogSamples: Backlog[] = []
  let artilleryExit = 1
  let drainSeconds: number | null = null
  let statuses: Record<string, number> | undefined
  let samplers: Record<string, ReturnType<typeof sampleUsage>> = {}
  const startedAt = new Date()

  try {
    console.log(`loadtest (${mode}) against ${target}; report in ${reportDir}`)
    await warmUp(target)

    const loadTimer = setInterval(() => {
      const [one, five] = os.loadavg()
      loads.push({ at: Date.now(), one: one ?? 0, five: five ?? 0 })
    }, 5_000)
    loadTimer.unref()

    const artillery = await runArtillery(mode, target, reportDir)
    samplers = {
      artillery: sampleUsage(() => processTree(artillery.pid), SAMPLE_INTERVAL_MS),
      ...(service
        ? {
            service: sampleUsage(() => [service.pid], SAMPLE_INTERVAL_MS),
            worker: sampleUsage(() => workerPids(service.pid), SAMPLE_INTERVAL_MS),
            postgres: sampleUsage(
              () => processTree(service.postgresPid),
              SAMPLE_INTERVAL_MS,
            ),
          }
        : {}),
    }
    let running = true
    const polling = backlog
      ? pollBacklog(backlog, backlogSamples, () => !running)
      : Promise.resolve()
    artilleryExit = await artillery.finished
    running = false
    await polling
    samplers.artillery?.stop()

    if (backlog) {
      console.log('waiting for the extraction backlog to drain...')
      drainSeconds = await drain(backlog, backlogSamples)
      statuses = await backlog.statuses()
      console.log(
        drainSeconds === null
          ? `the backlog did not drain within ${DRAIN_LIMIT_MS / 1000} s`
          : `the backlog drained ${drainSeconds.toFixed(1)} s after the run`,
      )
    }
    clearInterval(loadTimer)
  } finally {
    for (const sampler of Object.values(samplers)) sampler.stop()
    await backlog?.close()
    await service?.stop()
  }

  const info: RunInfo = {
    mode,
    target,
    upload: args.file ? path.basename(args.file) : 'the scenario default (uploadFile)',
    startedAt: startedAt.toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}`,
    artilleryExit,
    drainSeconds,
    drainLimitSeconds: backlog ? DRAIN_LIMIT_MS / 1000 : null,
    documentStatuses: statuses,
  }
  const usage: Record<string, CpuSample[]> = {}
  for (const [name, sampler] of Object.entries(samplers)) usage[name] = sampler.samples
  await writeFile(
    path.join(reportDir, 'samples.json'),
    `${JSON.stringify({ info, usage, backlog: backlogSamples, loads }, null, 1)}\n`,
  )

  const report = await makeReport(reportDir)
  console.log(`\nreport: ${path.join(reportDir, 'report.html')}`)
  console.log(`summary: ${path.join(reportDir, 'summary.md')}`)
  const drained = drainSeconds !== null || !backlog
  if (!report.passed || artilleryExit !== 0 || !drained) {
    console.log('loadtest FAILED: see the checks above and the report')
    return 1
  }
  console.log('loadtest passed')
  return 0
}

// Ctrl-C reaches the service and Artillery too (one process group): they stop on their
// own, and this process goes on to stop what is left and remove the data directory.
process.on('SIGINT', () => console.log('interrupted: stopping the run'))
process.exitCode = await main()

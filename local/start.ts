import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdir, open, readFile, unlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  type Config,
  ConfigError,
  configSchema,
  parseConfig,
  resetConfig,
} from '../lib/config.ts'
import { closePool, getPool } from '../lib/db.ts'
import { createLogger } from '../lib/logger.ts'
import { closeMail } from '../lib/mail.ts'
import { migrate } from '../lib/migrate.ts'
import { stopQueue } from '../lib/queue.ts'
import { ensureBucket, resetStorage } from '../lib/storage.ts'
import { redactUrl, startEmbeddedPostgres, startEmbeddedS3 } from './embedded.ts'
import { startGateway } from './gateway.ts'
import { startMailCatcher } from './mail-catcher.ts'
import { isAlive, removeRuntime, writeRuntime } from './runtime.ts'

type Stop = { name: string; run(): Promise<void> }

const SHUTDOWN_TIMEOUT_MS = 30_000

/** A failure the operator can fix from the message alone; printed without a stack. */
class StartError extends Error {}

// Everything started so far, stopped in reverse order on shutdown or failed start.
const stops: Stop[] = []

function onStop(name: string, run: () => Promise<void>): void {
  stops.push({ name, run })
}

async function stopAll(): Promise<void> {
  for (const stop of stops.splice(0).reverse()) {
    await stop.run().catch((error: unknown) => {
      console.error(`stopping the ${stop.name} failed:`, error)
    })
  }
}

async function claimLockFile(lockFile: string): Promise<boolean> {
  try {
    await writeFile(lockFile, `${process.pid}\n`, { flag: 'wx' })
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    return false
  }
}

/** One `npm start` per data directory: a second one fails instead of sharing files. */
async function lockDataDir(dataDir: string): Promise<void> {
  const lockFile = path.join(dataDir, 'start.pid')
  if (!(await claimLockFile(lockFile))) {
    const holder = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim())
    if (holder > 0 && isAlive(holder)) {
      throw new StartError(
        `another npm start (process ${holder}) is using the data directory ${dataDir} ` +
          '(DATA_DIR); stop it first or choose another DATA_DIR',
      )
    }
    // Left by a process that died without cleaning up.
    await unlink(lockFile).catch(() => {})
    if (!(await claimLockFile(lockFile))) {
      throw new StartError(`another npm start is claiming the data directory ${dataDir}`)
    }
  }
  onStop('data directory lock', () => unlink(lockFile).catch(() => {}))
}

/** The JWT signing secret, generated once and kept in the data directory (mode 0600). */
async function loadJwtSecret(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'jwt-secret')
  const existing = (await readFile(file, 'utf8').catch(() => '')).trim()
  if (existing) return existing

  const secret = randomBytes(48).toString('base64url')
  const handle = await open(file, 'wx', 0o600)
  await handle.writeFile(`${secret}\n`)
  await handle.close()
  return secret
}

function readConfig(): Config {
  try {
    return parseConfig(process.env)
  } catch (error) {
    if (error instanceof ConfigError) throw new StartError(error.message)
    throw error
  }
}

async function startDatabase(config: Config, dataDir: string): Promise<string> {
  if (config.DATABASE_URL) return `${redactUrl(config.DATABASE_URL)} (DATABASE_URL)`

  const dir = path.join(dataDir, 'postgres')
  const postgres = await startEmbeddedPostgres({
    dataDir: dir,
    verbose: config.LOG_LEVEL === 'DEBUG',
  })
  onStop('embedded PostgreSQL', postgres.stop)
  process.env.DATABASE_URL = postgres.url
  return `${redactUrl(postgres.url)} (embedded, data in ${dir}, log in ${dir}.log)`
}

async function startStorage(config: Config, dataDir: string): Promise<string> {
  if (config.S3_ENDPOINT) {
    return `${redactUrl(config.S3_ENDPOINT)} bucket ${config.S3_BUCKET} (S3_ENDPOINT)`
  }

  const dir = path.join(dataDir, 's3')
  const s3 = await startEmbeddedS3({ dataDir: dir, bucket: config.S3_BUCKET })
  onStop('embedded S3', s3.stop)
  process.env.S3_ENDPOINT = s3.url
  return `${s3.url} bucket ${config.S3_BUCKET} (embedded, data in ${dir})`
}

/** Without SMTP_URL, mail goes to a local catcher that keeps each message as a file. */
async function startMail(config: Config, dataDir: string): Promise<string> {
  if (config.SMTP_URL) return `${redactUrl(config.SMTP_URL)} (SMTP_URL)`

  const dir = path.join(dataDir, 'mail')
  const catcher = await startMailCatcher({
    dir,
    onMail: (mail) => console.error(`mail to ${mail.to.join(', ')} caught: ${mail.file}`),
  })
  onStop('mail catcher', catcher.stop)
  process.env.SMTP_URL = catcher.url
  return `${catcher.url} (local catcher, messages in ${dir})`
}

async function listen(config: Config): Promise<string> {
  try {
    const gateway = await startGateway({ host: config.HOST, port: config.PORT })
    onStop('gateway', gateway.close)
    return gateway.url
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new StartError(
        `port ${config.PORT} on ${config.HOST} is in use (PORT, HOST); ` +
          'is another instance running?',
      )
    }
    throw error
  }
}

const WORKER_ENTRY = fileURLToPath(new URL('./worker.ts', import.meta.url))
const WORKER_STOP_MS = 25_000

/**
 * The extraction worker as a process of its own, at a lower priority: PDF parsing and
 * OCR then never hold up the gateway's event loop. It writes to the same stdout; if it
 * exits unexpectedly it is started again.
 */
function startWorkerProcess(): void {
  let stopping = false
  const spawnWorker = (): ChildProcess => {
    const next = spawn(process.execPath, [WORKER_ENTRY], {
      env: process.env,
      stdio: ['ignore', 'inherit', 'inherit'],
    })
    next.on('exit', (code, signal) => {
      if (stopping) return
      createLogger('launcher').error('worker exited; starting it again', { code, signal })
      setTimeout(() => {
        if (!stopping) child = spawnWorker()
      }, 1_000).unref()
    })
    return next
  }
  let child = spawnWorker()

  onStop('worker', async () => {
    stopping = true
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    // The worker finishes or releases its jobs within its own grace; this is a backstop.
    const timer = setTimeout(() => child.kill('SIGKILL'), WORKER_STOP_MS)
    await exited
    clearTimeout(timer)
  })
}

async function start(): Promise<void> {
  const dataDir = path.resolve(
    configSchema.shape.DATA_DIR.parse(process.env.DATA_DIR || undefined),
  )
  await mkdir(dataDir, { recursive: true })
  await lockDataDir(dataDir)
  process.env.JWT_SECRET ||= await loadJwtSecret(dataDir)
  const config = readConfig()

  const database = await startDatabase(config, dataDir)
  const storage = await startStorage(config, dataDir)
  const mail = await startMail(config, dataDir)
  resetConfig()
  onStop('database pool', closePool)
  onStop('storage client', async () => resetStorage())
  onStop('job queue', () => stopQueue())
  onStop('mail transport', async () => closeMail())
  await migrate(getPool())
  await ensureBucket()

  startWorkerProcess()
  const url = await listen(config)
  // Where the services are, for npm run backup, restore and invoke (mode 0600).
  await writeRuntime(dataDir, {
    pid: process.pid,
    gatewayUrl: url,
    DATABASE_URL: process.env.DATABASE_URL ?? '',
    S3_ENDPOINT: process.env.S3_ENDPOINT ?? '',
    S3_BUCKET: config.S3_BUCKET,
  })
  onStop('runtime file', () => removeRuntime(dataDir))

  createLogger('launcher').info('service started', { url })
  // The banner is for the person at the terminal; stdout carries only JSON log lines.
  console.error(
    [
      'docservice is running',
      `  gateway   ${url}`,
      `  database  ${database}`,
      `  storage   ${storage}`,
      `  mail      ${mail}`,
      'Press Ctrl-C to stop.',
    ].join('\n'),
  )
}

async function shutdown(signal: string): Promise<void> {
  createLogger('launcher').info('shutting down', { signal })
  console.error(`${signal}: shutting down (again to force)`)
  process.once('SIGINT', () => process.exit(1))
  process.once('SIGTERM', () => process.exit(1))
  // A stop that hangs must not keep the process (and the terminal) forever.
  setTimeout(() => {
    console.error(`shutdown took longer than ${SHUTDOWN_TIMEOUT_MS} ms; exiting`)
    process.exit(1)
  }, SHUTDOWN_TIMEOUT_MS).unref()

  await stopAll()
  createLogger('launcher').info('service stopped', { signal })
  process.exit(0)
}

async function main(): Promise<void> {
  process.once('SIGINT', () => void shutdown('SIGINT'))
  process.once('SIGTERM', () => void shutdown('SIGTERM'))
  try {
    await start()
  } catch (error) {
    console.error(error instanceof StartError ? error.message : error)
    await stopAll()
    process.exit(1)
  }
}

await main()

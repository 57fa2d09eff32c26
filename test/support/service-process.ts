import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { findFreePort } from '../../local/embedded.ts'

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

export type ServiceProcess = {
  url: string
  databaseUrl: string
  /** The process's DATA_DIR (removed by `stop`); caught mail lands in `mail/`. */
  dataDir: string
  /** Every line the process wrote to stdout so far. */
  stdout: string[]
  stderr: string[]
  child: ChildProcess
  /** Sends the signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/**
 * A fresh database on the shared test server, so that the process's worker takes only
 * the jobs this test makes (every worker on one database shares one queue).
 */
async function createDatabase(baseUrl: string): Promise<string> {
  const name = `docservice_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: baseUrl })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  const url = new URL(baseUrl)
  url.pathname = `/${name}`
  return url.toString()
}

async function waitForStart(service: { stdout: string[]; child: ChildProcess }) {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    for (const line of service.stdout) {
      if (line.includes('"service started"')) return JSON.parse(line).url as string
    }
    if (service.child.exitCode !== null) break
    await delay(50)
  }
  throw new Error('the service process did not start')
}

/**
 * `npm start`'s entry as its own process, on the shared S3 server and a database of its
 * own, with its output collected line by line.
 */
export async function startServiceProcess(
  env: Record<string, string> = {},
): Promise<ServiceProcess> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'docservice-process-'))
  await chmod(dataDir, 0o755)
  const databaseUrl = await createDatabase(process.env.DATABASE_URL ?? '')
  const child = spawn(process.execPath, ['local/start.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(await findFreePort()),
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const stdout: string[] = []
  const stderr: string[] = []
  readline
    .createInterface({ input: child.stdout })
    .on('line', (line) => stdout.push(line))
  readline
    .createInterface({ input: child.stderr })
    .on('line', (line) => stderr.push(line))

  async function stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal)
      await once(child, 'exit')
    }
    await rm(dataDir, { recursive: true, force: true })
    return child.exitCode
  }

  try {
    const url = await waitForStart({ stdout, child })
    return { url, databaseUrl, dataDir, stdout, stderr, child, stop }
  } catch (error) {
    await stop('SIGKILL')
    throw new Error(`${(error as Error).message}:\n${stderr.join('\n')}`)
  }
}

import { open, readFile, unlink } from 'node:fs/promises'
import path from 'node:path'
import { configSchema } from '../lib/config.ts'

/**
 * What a running `npm start` tells the tools beside it (`npm run backup`, `restore`,
 * `invoke`): where its services are. The embedded PostgreSQL gets a free port and a
 * generated password on each start, so nothing else could find it.
 */
export type Runtime = {
  pid: number
  gatewayUrl?: string
  DATABASE_URL: string
  S3_ENDPOINT: string
  S3_BUCKET: string
}

const FILE = 'runtime.json'

/**
 * Node flags for every process that runs the gateway (`npm start`, the bench, the load
 * test, the compose service). V8 sizes the young generation by the machine's memory and
 * grew it to about 230 MiB of RSS under sustained load; 8 MiB semi-spaces hold it near
 * 150 MiB at the same throughput (4 MiB cost 9 %).
 */
export const GATEWAY_NODE_FLAGS = ['--max-semi-space-size=8'] as const

export function dataDirFrom(env: NodeJS.ProcessEnv): string {
  return path.resolve(configSchema.shape.DATA_DIR.parse(env.DATA_DIR || undefined))
}

/** Writes `<dataDir>/runtime.json` (mode 0600: it holds the database password). */
export async function writeRuntime(dataDir: string, runtime: Runtime): Promise<void> {
  const file = path.join(dataDir, FILE)
  await unlink(file).catch(() => {})
  const handle = await open(file, 'wx', 0o600)
  try {
    await handle.writeFile(`${JSON.stringify(runtime, null, 2)}\n`)
  } finally {
    await handle.close()
  }
}

export async function removeRuntime(dataDir: string): Promise<void> {
  await unlink(path.join(dataDir, FILE)).catch(() => {})
}

/** Whether a process of this id exists (one owned by another user counts). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The runtime of the `npm start` running on this data directory, if one runs. */
export async function readRuntime(dataDir: string): Promise<Runtime | undefined> {
  const text = await readFile(path.join(dataDir, FILE), 'utf8').catch(() => undefined)
  if (!text) return undefined
  const runtime = JSON.parse(text) as Runtime
  return runtime.pid > 0 && isAlive(runtime.pid) ? runtime : undefined
}

/**
 * Fills DATABASE_URL, S3_ENDPOINT and S3_BUCKET (and JWT_SECRET) from a running
 * `npm start` on DATA_DIR, for each one the environment leaves unset. Returns the
 * runtime it used, if any.
 */
export async function useRunningServices(
  env: NodeJS.ProcessEnv = process.env,
): Promise<Runtime | undefined> {
  if (env.DATABASE_URL && env.S3_ENDPOINT) return undefined
  const runtime = await readRuntime(dataDirFrom(env))
  if (!runtime) return undefined
  if (!env.DATABASE_URL) env.DATABASE_URL = runtime.DATABASE_URL
  if (!env.S3_ENDPOINT) {
    env.S3_ENDPOINT = runtime.S3_ENDPOINT
    env.S3_BUCKET ||= runtime.S3_BUCKET
  }
  // The signing secret npm start generated, so its tokens verify here too.
  if (!env.JWT_SECRET && !env.JWT_SIGNING_KEYS) {
    const secret = await readFile(path.join(dataDirFrom(env), 'jwt-secret'), 'utf8')
      .then((text) => text.trim())
      .catch(() => '')
    if (secret) env.JWT_SECRET = secret
  }
  return runtime
}

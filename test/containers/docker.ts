// The Docker engine for the container test: the one already reachable, or a dockerd this
// process starts with its own socket and data root (no iptables, no bridge: containers
// run with --network host or none), stopped again by its PID.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { openSync } from 'node:fs'
import { access, mkdir } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'

export type RunResult = { code: number; stdout: string; stderr: string }

/** Runs a command to completion; never throws for a non-zero exit. */
export function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      args,
      {
        env: options.env ?? process.env,
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0
        resolve({
          code,
          stdout: String(stdout),
          stderr: String(stderr || error?.message),
        })
      },
    )
    if (options.input !== undefined) child.stdin?.end(options.input)
  })
}

/** Runs a long command with its output going to a log file; resolves with the exit code. */
export function runLogged(
  command: string,
  args: string[],
  logFile: string,
  options: { env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<number> {
  return new Promise((resolve) => {
    const out = openSync(logFile, 'a')
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      stdio: ['ignore', out, out],
    })
    const timer = setTimeout(() => child.kill('SIGTERM'), options.timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve(code ?? 1)
    })
    child.on('error', () => {
      clearTimeout(timer)
      resolve(127)
    })
  })
}

export async function which(command: string): Promise<boolean> {
  const result = await run('sh', ['-c', `command -v ${command}`])
  return result.code === 0
}

/** Installs Debian's engine, compose and debootstrap when one of them is missing. */
export async function ensureTools(log: (line: string) => void): Promise<void> {
  const needed = [
    ['dockerd', 'docker.io'],
    ['docker', 'docker.io'],
    ['debootstrap', 'debootstrap'],
    ['docker-compose', 'docker-compose'],
  ]
  const missing = new Set<string>()
  for (const [command, pkg] of needed) {
    if (!(await which(command as string))) missing.add(pkg as string)
  }
  if (missing.size === 0) return

  log(`installing ${[...missing].join(', ')} with apt-get`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const update = await run('apt-get', ['update'], { env, timeoutMs: 300_000 })
  if (update.code !== 0) throw new Error(`apt-get update failed: ${update.stderr}`)
  const install = await run(
    'apt-get',
    ['install', '-y', '--no-install-recommends', ...missing],
    { env, timeoutMs: 600_000 },
  )
  if (install.code !== 0) throw new Error(`apt-get install failed: ${install.stderr}`)
}

export type Engine = {
  /** The environment that points docker and docker-compose at this engine. */
  env: NodeJS.ProcessEnv
  /** Set when this process started the daemon. */
  daemon?: ChildProcess
  stop(): Promise<void>
}

async function reachable(env: NodeJS.ProcessEnv): Promise<boolean> {
  const result = await run('docker', ['version', '--format', '{{.Server.Version}}'], {
    env,
    timeoutMs: 15_000,
  })
  return result.code === 0
}

/** The reachable engine, or a dockerd started under `dir` (its socket, data and logs). */
export async function startEngine(
  dir: string,
  log: (line: string) => void,
): Promise<Engine> {
  // The classic builder: Debian's engine has no buildx, and the Dockerfile needs neither.
  const base = { ...process.env, DOCKER_BUILDKIT: '0' }
  if (await reachable(base)) {
    log('using the Docker engine that is already running')
    return { env: base, stop: async () => {} }
  }

  await mkdir(dir, { recursive: true })
  const socket = path.join(dir, 'docker.sock')
  const env = { ...base, DOCKER_HOST: `unix://${socket}` }
  const out = openSync(path.join(dir, 'dockerd.log'), 'a')
  const daemon = spawn(
    'dockerd',
    [
      `--host=unix://${socket}`,
      `--data-root=${path.join(dir, 'data')}`,
      `--exec-root=${path.join(dir, 'exec')}`,
      `--pidfile=${path.join(dir, 'dockerd.pid')}`,
      '--storage-driver=overlay2',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
      '--bridge=none',
    ],
    { stdio: ['ignore', out, out] },
  )
  log(`started dockerd (pid ${daemon.pid}) with its socket at ${socket}`)

  const deadline = Date.now() + 60_000
  while (!(await reachable(env))) {
    if (daemon.exitCode !== null)
      throw new Error('dockerd exited at start; see dockerd.log')
    if (Date.now() > deadline) throw new Error('dockerd did not answer within 60 s')
    await delay(500)
  }

  async function stop(): Promise<void> {
    if (daemon.exitCode !== null) return
    const exited = new Promise((resolve) => daemon.once('exit', resolve))
    daemon.kill('SIGTERM')
    const timer = setTimeout(() => daemon.kill('SIGKILL'), 30_000)
    await exited
    clearTimeout(timer)
    // dockerd leaves its default network namespace mounted under the exec root.
    await run('umount', [path.join(dir, 'exec', 'netns', 'default')])
    log(`stopped dockerd (pid ${daemon.pid})`)
  }
  return { env, daemon, stop }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await access(file)
    return true
  } catch {
    return false
  }
}

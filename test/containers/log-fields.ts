// The fields Grafana and Alloy query must be fields the service really writes. This runs
// the service (npm start's launcher: gateway, functions, worker, embedded PostgreSQL and
// S3) on a free port, drives a few requests through it, and keeps its log lines; the
// queries are then read out of the dashboard and the Alloy config and matched against them.
import { spawn } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import {
  corpusFile,
  postJson,
  randomClientIp,
  registerAndLogin,
  upload,
  waitForFinal,
} from '../support/http.ts'

export type LogLine = Record<string, unknown>

/** What one query needs: the lines it selects and the fields it reads from them. */
export type Requirement = {
  source: string
  query: string
  selectors: Record<string, string>
  fields: string[]
}

const LABEL_SELECTORS = new Set(['service', 'function', 'message'])

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Splits a LogQL query into its selecting matchers and the fields it reads. */
export function requirementOf(source: string, query: string): Requirement {
  const selectors: Record<string, string> = {}
  const fields = new Set<string>()
  const stream = query.match(/\{([^}]*)\}/)?.[1] ?? ''
  for (const [, name, op, value] of stream.matchAll(
    /(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g,
  )) {
    if (LABEL_SELECTORS.has(name as string) && op === '=')
      selectors[name as string] = value as string
    else fields.add(name as string)
  }

  const pipeline = query.slice(query.indexOf('}') + 1)
  const filters = pipeline.matchAll(
    /\|\s*(\w+)\s*(=~|!~|!=|>=|<=|=|>|<)\s*("[^"]*"|[\d.]+)/g,
  )
  for (const [, name, op, value] of filters) {
    if (name === 'message' && op === '=')
      selectors.message = (value as string).slice(1, -1)
    else fields.add(name as string)
  }
  for (const [, name] of pipeline.matchAll(/unwrap\s+(\w+)/g)) fields.add(name as string)
  // `sum by (route) (...)` stands before the selector, `... ) by (route)` after it.
  for (const [, names] of query.matchAll(/\bby\s*\(([^)]*)\)/g)) {
    for (const name of (names as string).split(',')) fields.add(name.trim())
  }
  return { source, query, selectors, fields: [...fields].filter(Boolean) }
}

/** Every query of the provisioned dashboard. */
export async function dashboardRequirements(root: string): Promise<Requirement[]> {
  const file = path.join(root, 'infra/grafana/dashboards/docservice.json')
  const dashboard = JSON.parse(await readFile(file, 'utf8')) as {
    panels: { title: string; targets?: { expr: string }[] }[]
  }
  return dashboard.panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => requirementOf(panel.title, target.expr)),
  )
}

/**
 * The Alloy pipeline's stage.json blocks: the first reads Docker's json-file wrapper, the
 * second our own line.
 */
export async function alloyRequirements(
  root: string,
): Promise<{ wrapper: string[]; line: string[] }> {
  const text = await readFile(path.join(root, 'infra/alloy/config.alloy'), 'utf8')
  const blocks = [...text.matchAll(/stage\.json\s*\{\s*expressions\s*=\s*\{([^}]*)\}/g)]
  const keys = blocks.map((block) =>
    [...(block[1] as string).matchAll(/=\s*"((?:[^"\\]|\\.)*)"/g)].map((match) =>
      (match[1] as string).replaceAll('\\"', '"'),
    ),
  )
  if (keys.length !== 2)
    throw new Error(`expected two stage.json blocks, found ${keys.length}`)
  return { wrapper: keys[0] as string[], line: keys[1] as string[] }
}

/** Reads a JMESPath-like key (`attrs."com.docker.compose.service"`) from an object. */
export function fieldAt(line: LogLine, key: string): unknown {
  const parts = key.match(/"[^"]*"|[^.]+/g) ?? []
  let value: unknown = line
  for (const part of parts) {
    if (typeof value !== 'object' || value === null) return undefined
    value = (value as Record<string, unknown>)[part.replace(/^"|"$/g, '')]
  }
  return value
}

/** The requirements no real line meets, as messages (empty when every one is met). */
export function unmet(requirements: Requirement[], lines: LogLine[]): string[] {
  const problems: string[] = []
  for (const requirement of requirements) {
    const selected = lines.filter((line) =>
      Object.entries(requirement.selectors).every(([key, value]) => line[key] === value),
    )
    if (selected.length === 0) {
      problems.push(
        `${requirement.source}: no line with ${JSON.stringify(requirement.selectors)}`,
      )
      continue
    }
    const complete = selected.some((line) =>
      requirement.fields.every(
        (field) => line[field] !== undefined && line[field] !== null,
      ),
    )
    if (!complete) {
      problems.push(
        `${requirement.source}: no ${JSON.stringify(requirement.selectors)} line has all of ${requirement.fields.join(', ')}`,
      )
    }
  }
  return problems
}

/**
 * Runs the service for a short scripted session and returns every JSON line it wrote:
 * a health check, a 404, a registration and login, an upload taken through OCR, and
 * logins past the login rate limit (429).
 */
export async function serviceLogLines(root: string): Promise<LogLine[]> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'docservice-logs-'))
  // Run as root, the launcher hands PostgreSQL to an unprivileged user, who must enter it.
  await chmod(dataDir, 0o755)
  const port = await freePort()
  const child = spawn(process.execPath, ['local/start.ts'], {
    cwd: root,
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'INFO',
      RATE_LIMIT_LOGIN: '2/60',
      WORKER_CONCURRENCY: '1',
      OCR_WORKERS: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8')
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8')
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))

  try {
    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 120_000
    while (!stdout.includes('"service started"')) {
      if (child.exitCode !== null)
        throw new Error(`the service exited at start:\n${stderr}`)
      if (Date.now() > deadline) throw new Error(`the service did not start:\n${stderr}`)
      await delay(200)
    }

    await fetch(`${url}/health`)
    await fetch(`${url}/no-such-route`)
    const account = await registerAndLogin(url)
    const created = await upload(url, account, await corpusFile('docs/bill.png'))
    const { id } = (await created.json()) as { id: string }
    await waitForFinal(url, account, id, 120_000)

    const client = { 'x-forwarded-for': randomClientIp() }
    for (let attempt = 0; attempt < 4; attempt++) {
      await postJson(
        `${url}/auth/login`,
        { email: account.email, password: 'wrong' },
        client,
      )
    }
  } finally {
    child.kill('SIGTERM')
    const stopped = await Promise.race([exited.then(() => true), delay(30_000, false)])
    if (!stopped) child.kill('SIGKILL')
    await rm(dataDir, { recursive: true, force: true })
  }

  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as LogLine]
      } catch {
        return []
      }
    })
}

// Checks on the built image, each run exactly as compose runs our services.
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { type Engine, run } from './docker.ts'
import { startRuntimeApi } from './runtime-api.ts'

/** The hardening flags of every service of ours in docker-compose.yml. */
export const HARDENED = [
  '--read-only',
  '--tmpfs',
  '/tmp',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
  '--user',
  '1000:1000',
]

const JWT_SECRET = randomBytes(32).toString('hex')

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message)
}

function parseLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>]
      } catch {
        return []
      }
    })
}

function healthEvent(correlationId: string): unknown {
  const now = new Date()
  return {
    version: '2.0',
    routeKey: 'GET /health',
    rawPath: '/health',
    rawQueryString: '',
    headers: { host: 'localhost', 'x-correlation-id': correlationId },
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName: 'localhost',
      domainPrefix: 'localhost',
      http: {
        method: 'GET',
        path: '/health',
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: 'container-test',
      },
      requestId: `container-test-${now.getTime()}`,
      routeKey: 'GET /health',
      stage: '$default',
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    isBase64Encoded: false,
  }
}

/**
 * Runs the health function through the runtime client against a Runtime API served on
 * loopback (--network host), and returns the container's log file as Docker's json-file
 * driver wrote it (with compose's logging options), for the Alloy pipeline check.
 */
export async function checkRuntimeApi(
  engine: Engine,
  image: string,
  handler: string,
  functionName: string,
): Promise<Record<string, unknown>[]> {
  const api = await startRuntimeApi(functionName)
  const name = `docservice-ric-${process.pid}`
  const started = await run(
    'docker',
    [
      'run',
      '--detach',
      '--name',
      name,
      ...HARDENED,
      '--network',
      'host',
      '--log-driver',
      'json-file',
      '--log-opt',
      'labels=com.docker.compose.service',
      '--label',
      `com.docker.compose.service=${functionName}`,
      '--env',
      `AWS_LAMBDA_RUNTIME_API=${api.address}`,
      // What Lambda (or the RIE) sets for the runtime client.
      '--env',
      `AWS_LAMBDA_FUNCTION_NAME=${functionName}`,
      '--env',
      'AWS_LAMBDA_FUNCTION_VERSION=$LATEST',
      '--env',
      'AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256',
      '--env',
      `AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/${functionName}`,
      '--env',
      'AWS_LAMBDA_LOG_STREAM_NAME=container-test',
      '--env',
      `JWT_SECRET=${JWT_SECRET}`,
      image,
      handler,
    ],
    { env: engine.env },
  )
  try {
    assert(started.code === 0, `docker run failed: ${started.stderr}`)
    const correlationId = `container-test-${randomBytes(4).toString('hex')}`
    const reply = await api
      .invoke(healthEvent(correlationId), 60_000)
      .catch(async (error) => {
        const logs = await run('docker', ['logs', '--tail', '30', name], {
          env: engine.env,
        })
        throw new Error(`${(error as Error).message}\n${logs.stdout}${logs.stderr}`)
      })

    assert(
      reply.kind === 'response',
      `the function reported an error: ${JSON.stringify(reply.body)}`,
    )
    const result = reply.body as {
      statusCode?: number
      body?: string
      headers?: Record<string, string>
    }
    assert(
      result.statusCode === 200,
      `statusCode ${result.statusCode}, body ${result.body}`,
    )
    assert(JSON.parse(result.body ?? '{}').status === 'ok', `body ${result.body}`)
    assert(
      result.headers?.['x-correlation-id'] === correlationId,
      'the answer does not echo the correlation id',
    )
    assert(api.initErrors.length === 0, `init errors: ${JSON.stringify(api.initErrors)}`)

    const logPath = await run('docker', ['inspect', '--format', '{{.LogPath}}', name], {
      env: engine.env,
    })
    const wrappers = parseLines(await readFile(logPath.stdout.trim(), 'utf8'))
    const lines = wrappers.flatMap((wrapper) => parseLines(String(wrapper.log ?? '')))
    assert(
      lines.some((line) => line.correlation_id === correlationId),
      `no log line carries the correlation id:\n${JSON.stringify(wrappers)}`,
    )
    return wrappers
  } finally {
    await run('docker', ['rm', '--force', name], { env: engine.env })
    await api.close()
  }
}

// Runs inside the image: who the process is, where it can write, and what is installed.
const INSPECT = `
const fs = require('node:fs')
const path = require('node:path')
const writes = {}
for (const dir of ['/tmp', '/', '/var/task', '/etc', '/usr/local/bin', '/opt/ric', '/home', '/root', '/var/tmp']) {
  try { fs.writeFileSync(path.join(dir, '.probe'), 'x'); fs.rmSync(path.join(dir, '.probe')); writes[dir] = 'written' }
  catch (error) { writes[dir] = error.code }
}
const setuid = []
const walk = (dir) => {
  let entries = []
  try { entries = fs.readdirSync(dir, { withFileTypes: true }) } catch { return }
  for (const entry of entries) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) { if (!['/proc', '/sys', '/dev'].includes(full)) walk(full); continue }
    if (!entry.isFile()) continue
    try { if (fs.statSync(full).mode & 0o6000) setuid.push(full) } catch {}
  }
}
walk('/')
const tool = /^(cc|c\\+\\+|gcc|g\\+\\+|clang|clang\\+\\+|tcc|make|cmake|ld|as|[a-z0-9_]+-linux-gnu-(gcc|g\\+\\+|cc|ld))(-[0-9.]+)?$/
const npmLike = /^(npm|npx|corepack|yarn|yarnpkg|pnpm)$/
const compilers = [], npm = []
for (const dir of (process.env.PATH || '').split(':').concat(['/usr/bin', '/usr/local/bin', '/bin'])) {
  let names = []
  try { names = fs.readdirSync(dir) } catch { continue }
  for (const name of names) {
    if (tool.test(name)) compilers.push(path.join(dir, name))
    if (npmLike.test(name)) npm.push(path.join(dir, name))
  }
}
for (const dir of ['/usr/local/lib/node_modules/npm', '/usr/lib/node_modules/npm', '/usr/share/nodejs/npm']) {
  if (fs.existsSync(dir)) npm.push(dir)
}
console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), writes, setuid, compilers, npm }))
`

export type Inspection = {
  uid: number
  gid: number
  writes: Record<string, string>
  setuid: string[]
  compilers: string[]
  npm: string[]
}

export async function inspectImage(engine: Engine, image: string): Promise<Inspection> {
  const result = await run(
    'docker',
    [
      'run',
      '--rm',
      ...HARDENED,
      '--network',
      'none',
      '--entrypoint',
      '/usr/local/bin/node',
      image,
      '-e',
      INSPECT,
    ],
    { env: engine.env, timeoutMs: 180_000 },
  )
  assert(result.code === 0, `inspection failed: ${result.stderr}`)
  return JSON.parse(result.stdout.trim().split('\n').pop() as string) as Inspection
}

/**
 * Extracts text from a scanned PDF and a photo inside the image with no network: the
 * OCR WebAssembly, worker script and language data must all come from the bundle.
 */
export async function checkOcr(
  engine: Engine,
  image: string,
  smokeDir: string,
  corpusDir: string,
): Promise<void> {
  const result = await run(
    'docker',
    [
      'run',
      '--rm',
      ...HARDENED,
      '--network',
      'none',
      '--volume',
      `${smokeDir}:/var/task/extract-smoke:ro`,
      '--volume',
      `${path.join(corpusDir, 'docs')}:/corpus:ro`,
      '--env',
      `JWT_SECRET=${JWT_SECRET}`,
      '--env',
      'OCR_WORKERS=1',
      '--entrypoint',
      '/usr/local/bin/node',
      image,
      'extract-smoke/index.mjs',
      '/corpus/scanned-testocr.pdf',
      '/corpus/bill.png',
    ],
    { env: engine.env, timeoutMs: 300_000 },
  )
  assert(result.code === 0, `extraction failed in the image: ${result.stderr}`)
  const results = parseLines(result.stdout)
  const [pdf, png] = results
  assert(
    pdf?.status === 'done' && /quick brown/i.test(String(pdf.text)),
    `scanned PDF: ${JSON.stringify(pdf)}`,
  )
  assert(
    png?.status === 'done' && /chequing/i.test(String(png.text)),
    `photo: ${JSON.stringify(png)}`,
  )
}

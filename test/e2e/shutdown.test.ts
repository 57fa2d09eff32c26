import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { access, chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { connect } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import sharp from 'sharp'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type EmbeddedService,
  findFreePort,
  startEmbeddedPostgres,
  startEmbeddedS3,
} from '../../local/embedded.ts'
import {
  type Account,
  CORPUS_DIR,
  getDocument,
  registerAndLogin,
  upload,
} from '../support/http.ts'
import { until } from '../support/wait.ts'

const REPO = fileURLToPath(new URL('../../', import.meta.url))
const BUCKET = 'shutdown-test'

// `npm start` as a child process against this file's own PostgreSQL and S3 server (with
// DATABASE_URL and S3_ENDPOINT set it starts no embedded service), so that no other
// file's worker takes the job this file interrupts.
let root: string
let postgres: EmbeddedService
let s3: EmbeddedService
let database: pg.Client

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'docservice-shutdown-'))
  await chmod(root, 0o755)
  ;[postgres, s3] = await Promise.all([
    startEmbeddedPostgres({ dataDir: path.join(root, 'postgres'), ephemeral: true }),
    startEmbeddedS3({ dataDir: path.join(root, 's3'), bucket: BUCKET }),
  ])
  database = new pg.Client({ connectionString: postgres.url })
  await database.connect()
})

afterAll(async () => {
  await database?.end()
  await Promise.all([s3?.stop(), postgres?.stop()])
  await rm(root, { recursive: true, force: true })
})

type Started = { child: ChildProcess; url: string; dataDir: string; output(): string }

async function startService(name: string): Promise<Started> {
  const port = await findFreePort()
  const dataDir = path.join(root, name)
  const child = spawn(process.execPath, ['local/start.ts'], {
    cwd: REPO,
    env: {
      ...process.env,
      DATABASE_URL: postgres.url,
      S3_ENDPOINT: s3.url,
      S3_BUCKET: BUCKET,
      DATA_DIR: dataDir,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'WARN',
      WORKER_CONCURRENCY: '1',
      OCR_WORKERS: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let text = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    text += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    text += chunk.toString()
  })
  const output = () => text
  await until(
    'npm start to be running',
    async () => ({
      running: output().includes('docservice is running'),
      code: child.exitCode,
    }),
    (state) => state.running || state.code !== null,
  )
  if (child.exitCode !== null) throw new Error(`npm start exited:\n${output()}`)
  return { child, url: `http://127.0.0.1:${port}`, dataDir, output }
}

/** True once nothing accepts connections on the port. */
function refused(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) })
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  )
}

type Answer = { status: number; body: string }

/**
 * An upload whose headers reach the gateway at once (the 100 Continue says so) and whose
 * body is sent only when `send()` is called.
 */
function slowUpload(baseUrl: string, account: Account, bytes: Buffer) {
  const { hostname, port } = new URL(baseUrl)
  const req = request({
    host: hostname,
    port: Number(port),
    method: 'POST',
    path: '/documents?filename=late.png',
    headers: {
      ...account.headers,
      'content-type': 'image/png',
      'content-length': String(bytes.length),
      expect: '100-continue',
    },
  })
  const accepted = once(req, 'continue')
  const answered = new Promise<Answer>((resolve, reject) => {
    req.on('response', (response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => {
        body += chunk.toString()
      })
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }))
    })
    req.on('error', reject)
  })
  req.flushHeaders()
  return {
    accepted,
    answered,
    send() {
      req.end(bytes)
    },
  }
}

describe('graceful shutdown of npm start', () => {
  it('on SIGTERM stops accepting, finishes the request in flight, and leaves no job processing', async () => {
    const service = await startService('sigterm')
    const exited = once(service.child, 'exit')
    const account = await registerAndLogin(service.url)

    // Twenty scanned pages keep the worker busy for seconds: a job runs at the signal.
    const page = await readFile(path.join(CORPUS_DIR, 'docs/testocr.png'))
    const slowTiff = await sharp(Array(20).fill(page), { join: { animated: true } })
      .tiff({ compression: 'lzw' })
      .toBuffer()
    const uploaded = await upload(service.url, account, {
      bytes: slowTiff,
      filename: 'slow.tiff',
    })
    expect(uploaded.status).toBe(201)
    const { id: slowId } = (await uploaded.json()) as { id: string }
    await until(
      'the extraction to start',
      async () => (await getDocument(service.url, account, slowId)).status,
      (status) => status !== 'pending',
    )

    const late = slowUpload(service.url, account, page)
    await late.accepted
    service.child.kill('SIGTERM')
    await until('the gateway to stop accepting', () => refused(service.url), Boolean)
    late.send()
    const answer = await late.answered
    const [code] = await exited

    expect(answer.status, answer.body).toBe(201)
    expect(code, service.output()).toBe(0)
    expect(service.output()).toContain('SIGTERM: shutting down')
    const { rows } = await database.query<{ id: string; status: string }>(
      `SELECT d.id, d.status FROM documents d JOIN users u ON u.id = d.owner_id
       WHERE u.email = $1`,
      [account.email],
    )
    expect(rows).toHaveLength(2)
    for (const row of rows) expect(['pending', 'done']).toContain(row.status)
    const jobs = await database.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pgboss.job WHERE state = 'active'",
    )
    expect(jobs.rows[0]?.n).toBe(0)
    expect(await exists(path.join(service.dataDir, 'start.pid'))).toBe(false)
    expect(await exists(path.join(service.dataDir, 'runtime.json'))).toBe(false)
  })

  it('on SIGINT stops the same way and exits 0', async () => {
    const service = await startService('sigint')
    const exited = once(service.child, 'exit')
    const runtime = JSON.parse(
      await readFile(path.join(service.dataDir, 'runtime.json'), 'utf8'),
    ) as { pid: number; gatewayUrl: string; DATABASE_URL: string }
    expect(runtime).toMatchObject({
      pid: service.child.pid,
      gatewayUrl: service.url,
      DATABASE_URL: postgres.url,
    })
    expect((await fetch(`${service.url}/health`)).status).toBe(200)

    service.child.kill('SIGINT')
    const [code] = await exited

    expect(code, service.output()).toBe(0)
    expect(service.output()).toContain('SIGINT: shutting down')
    expect(await refused(service.url)).toBe(true)
  })
})

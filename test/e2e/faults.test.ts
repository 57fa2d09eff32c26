import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { query } from '../../lib/db.ts'
import { startQueue, stopQueue } from '../../lib/queue.ts'
import {
  type EmbeddedService,
  findFreePort,
  startEmbeddedPostgres,
  startEmbeddedS3,
} from '../../local/embedded.ts'
import { startApp, type TestApp } from '../support/app.ts'
import { CORPUS_DIR, registerAndLogin, upload } from '../support/http.ts'
import { leaveStores, useStores } from '../support/stores.ts'
import { until } from '../support/wait.ts'

// This file stops and starts its own PostgreSQL and S3 server: the shared ones serve
// every other test file at the same time.
const BUCKET = 'faults-test'
const savedEnv = { ...process.env }

let root: string
let pgPort: number
let s3Port: number
let postgres: EmbeddedService | undefined
let s3: EmbeddedService | undefined
let app: TestApp
let png: Buffer

function startPostgres(): Promise<EmbeddedService> {
  return startEmbeddedPostgres({
    dataDir: path.join(root, 'postgres'),
    port: pgPort,
    ephemeral: true,
  })
}

function startS3(): Promise<EmbeddedService> {
  return startEmbeddedS3({ dataDir: path.join(root, 's3'), port: s3Port, bucket: BUCKET })
}

type Answer = { status: number; headers: Headers; body: Record<string, unknown> }

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(url, init)
  const text = await response.text()
  return {
    status: response.status,
    headers: response.headers,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  }
}

function expectUnavailable(answer: Answer, code: string): void {
  expect(answer.status, JSON.stringify(answer.body)).toBe(503)
  expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0)
  expect(answer.headers.get('x-correlation-id')).toBeTruthy()
  expect(answer.body).toMatchObject({ status: 503, code })
  expect(answer.body.correlationId).toBe(answer.headers.get('x-correlation-id'))
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'docservice-faults-'))
  await chmod(root, 0o755)
  ;[pgPort, s3Port] = await Promise.all([findFreePort(), findFreePort()])
  ;[postgres, s3] = await Promise.all([startPostgres(), startS3()])
  await useStores({ DATABASE_URL: postgres.url, S3_ENDPOINT: s3.url, S3_BUCKET: BUCKET })
  // The queue's schema and queues, as the worker of npm start creates them.
  await startQueue()
  app = await startApp({ worker: false })
  png = await readFile(path.join(CORPUS_DIR, 'docs/testocr.png'))
})

afterAll(async () => {
  await app?.stop()
  await stopQueue()
  await leaveStores(savedEnv)
  await Promise.all([s3?.stop(), postgres?.stop()])
  await rm(root, { recursive: true, force: true })
})

describe('readiness', () => {
  it('reports every dependency and the extraction backlog when ready', async () => {
    const answer = await call(`${app.url}/ready`)

    expect(answer.status, JSON.stringify(answer.body)).toBe(200)
    expect(answer.headers.get('cache-control')).toBe('no-store')
    expect(answer.body).toMatchObject({
      status: 'ready',
      checks: {
        database: { ok: true },
        migrations: { ok: true, pending: [] },
        storage: { ok: true, bucket: BUCKET },
        queue: { ok: true },
      },
      backlog: { queued: expect.any(Number), active: expect.any(Number) },
    })
    expect(answer.body.backlog).toHaveProperty('oldestQueuedSeconds')
  })

  it('counts a waiting job and its age in the backlog', async () => {
    const account = await registerAndLogin(app.url)
    // No worker runs in this file: the job waits.
    const uploaded = await upload(app.url, account, { bytes: png, filename: 'a.png' })
    expect(uploaded.status).toBe(201)

    const answer = await call(`${app.url}/ready`)

    expect(answer.status).toBe(200)
    const backlog = answer.body.backlog as { queued: number; oldestQueuedSeconds: number }
    expect(backlog.queued).toBeGreaterThanOrEqual(1)
    expect(backlog.oldestQueuedSeconds).toBeGreaterThanOrEqual(0)
  })

  it('is not ready while a migration is pending', async () => {
    await query("DELETE FROM schema_migrations WHERE version = '001_initial'")
    try {
      const answer = await call(`${app.url}/ready`)

      expectUnavailable(answer, 'not_ready')
      expect(answer.body).toMatchObject({
        checks: {
          migrations: { ok: false, pending: ['001_initial'] },
          database: { ok: true },
        },
      })
    } finally {
      await query("INSERT INTO schema_migrations (version) VALUES ('001_initial')")
    }
  })
})

describe('PostgreSQL stopped and started while the service runs', () => {
  it('answers 503 problems with Retry-After during the outage, and recovers without a restart', async () => {
    const account = await registerAndLogin(app.url)
    const before = await upload(app.url, account, { bytes: png, filename: 'before.png' })
    expect(before.status).toBe(201)
    const { id } = (await before.json()) as { id: string }

    await postgres?.stop()
    postgres = undefined
    const list = await call(`${app.url}/documents`, { headers: account.headers })
    const login = await call(`${app.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...account.headers },
      body: JSON.stringify({ email: account.email, password: account.password }),
    })
    const ready = await call(`${app.url}/ready`)
    const health = await call(`${app.url}/health`)

    expectUnavailable(list, 'database_unavailable')
    expect(login.status, JSON.stringify(login.body)).toBe(503)
    expect(login.headers.get('retry-after')).toBeTruthy()
    expectUnavailable(ready, 'not_ready')
    expect(ready.body).toMatchObject({ checks: { database: { ok: false } } })
    // A public endpoint: the reason is a code, with no address of the database in it.
    expect(JSON.stringify(ready.body)).not.toContain('127.0.0.1')
    expect(health.status).toBe(200)

    // Same data directory and port: the service's pool reconnects by itself.
    postgres = await startPostgres()
    const recovered = await until(
      'the document list to answer again',
      () => call(`${app.url}/documents`, { headers: account.headers }),
      (answer) => answer.status === 200,
    )
    const after = await upload(app.url, account, { bytes: png, filename: 'after.png' })
    const readyAgain = await until(
      '/ready to answer 200',
      () => call(`${app.url}/ready`),
      (answer) => answer.status === 200,
    )

    const items = recovered.body.items as { id: string }[]
    expect(items.map((item) => item.id)).toContain(id)
    expect(after.status, await after.clone().text()).toBe(201)
    expect(readyAgain.body.status).toBe('ready')
  })
})

describe('object storage unreachable during an upload', () => {
  it('answers 503, stores no row and charges no quota', async () => {
    const account = await registerAndLogin(app.url)
    const quotaBefore = await call(`${app.url}/auth/me`, { headers: account.headers })

    await s3?.stop()
    s3 = undefined
    const response = await upload(app.url, account, { bytes: png, filename: 'lost.png' })
    const answer: Answer = {
      status: response.status,
      headers: response.headers,
      body: (await response.json()) as Record<string, unknown>,
    }
    const ready = await call(`${app.url}/ready`)
    const quotaDuring = await call(`${app.url}/auth/me`, { headers: account.headers })
    const { rows } = await query<{ n: number }>(
      `SELECT count(*)::int AS n FROM documents d JOIN users u ON u.id = d.owner_id
       WHERE lower(u.email) = lower($1)`,
      [account.email],
    )

    expectUnavailable(answer, 'storage_unavailable')
    expectUnavailable(ready, 'not_ready')
    expect(ready.body).toMatchObject({ checks: { storage: { ok: false } } })
    expect(rows[0]?.n).toBe(0)
    expect(quotaDuring.body.quota).toEqual(quotaBefore.body.quota)
    expect((quotaDuring.body.quota as { usedBytes: number }).usedBytes).toBe(0)

    s3 = await startS3()
    const retried = await until(
      'an upload to succeed again',
      () => upload(app.url, account, { bytes: png, filename: 'again.png' }),
      (again) => again.status !== 503,
    )
    expect(retried.status).toBe(201)
  })
})

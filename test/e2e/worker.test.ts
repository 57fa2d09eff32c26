import { type ChildProcess, spawn } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import sharp from 'sharp'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { query, withTransaction } from '../../lib/db.ts'
import { closeOcrPool } from '../../lib/extraction/ocr.ts'
import { sniffMediaType } from '../../lib/extraction/sniff.ts'
import {
  EXTRACT_QUEUE,
  enqueueExtraction,
  queueStats,
  stopQueue,
} from '../../lib/queue.ts'
import { putObject } from '../../lib/storage.ts'
import {
  type EmbeddedService,
  startEmbeddedPostgres,
  startEmbeddedS3,
} from '../../local/embedded.ts'
import { type RunningWorker, startWorker } from '../../local/worker.ts'
import { leaveStores, useStores } from '../support/stores.ts'
import { until } from '../support/wait.ts'

const REPO = fileURLToPath(new URL('../../', import.meta.url))
const CORPUS_DIR = process.env.CORPUS_DIR
  ? path.resolve(process.env.CORPUS_DIR)
  : path.resolve(REPO, '../shared/corpus')
const BUCKET = 'worker-test'
const FINAL = ['done', 'failed', 'skipped']

// This file runs its own PostgreSQL and S3 server: it changes the queue's retry and
// heartbeat settings, which other files' workers on the shared services would undo.
const TEST_ENV = {
  S3_BUCKET: BUCKET,
  LOG_LEVEL: 'SILENT',
  WORKER_CONCURRENCY: '1',
  OCR_WORKERS: '1',
  EXTRACT_MAX_ATTEMPTS: '3',
  EXTRACT_RETRY_DELAY_SECONDS: '1',
  EXTRACT_HEARTBEAT_SECONDS: '10',
  QUEUE_SUPERVISE_SECONDS: '1',
}

type DocumentRow = {
  status: string
  status_reason: string | null
  extracted_text: string | null
  text_source: string | null
  pages: number | null
  attempts: number
  extracted_at: Date | null
}

const savedEnv = { ...process.env }
let root: string
let postgres: EmbeddedService
let s3: EmbeddedService
let ownerId: string
let slowTiff: Buffer
const workers: RunningWorker[] = []

async function corpusFile(file: string): Promise<Buffer> {
  return readFile(path.join(CORPUS_DIR, file))
}

function normalise(text: string | null): string {
  return (text ?? '').replace(/\s+/g, ' ').trim().toLowerCase()
}

async function worker(
  options: { shutdownGraceMs?: number } = {},
): Promise<RunningWorker> {
  const started = await startWorker({ concurrency: 1, ...options })
  workers.push(started)
  return started
}

/** A document row and its stored object, the way an upload leaves them, and its job. */
async function submit(
  bytes: Buffer,
  options: { store?: boolean } = {},
): Promise<{ id: string; jobId: string }> {
  const id = randomUUID()
  const objectKey = `documents/${ownerId}/${id}`
  const mediaType = (await sniffMediaType(bytes)) ?? 'application/octet-stream'
  if (options.store !== false) await putObject(objectKey, bytes, mediaType)
  await query(
    `INSERT INTO documents
       (id, owner_id, title, filename, media_type, size_bytes, sha256, object_key, correlation_id)
     VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8)`,
    [
      id,
      ownerId,
      `test-${id}`,
      mediaType,
      bytes.length,
      createHash('sha256').update(bytes).digest('hex'),
      objectKey,
      `test-${id}`,
    ],
  )
  const jobId = await enqueueExtraction(id, `test-${id}`)
  if (!jobId) throw new Error('the job was not created')
  return { id, jobId }
}

async function documentRow(id: string): Promise<DocumentRow | undefined> {
  const { rows } = await query<DocumentRow>(
    `SELECT status, status_reason, extracted_text, text_source, pages, attempts, extracted_at
     FROM documents WHERE id = $1`,
    [id],
  )
  return rows[0]
}

async function jobState(
  jobId: string,
): Promise<{ state: string; output: unknown } | undefined> {
  const { rows } = await query<{ state: string; output: unknown }>(
    'SELECT state::text, output FROM pgboss.job WHERE id = $1',
    [jobId],
  )
  return rows[0]
}

function finalRow(id: string, timeoutMs?: number): Promise<DocumentRow | undefined> {
  return until(
    `document ${id} to finish`,
    () => documentRow(id),
    (row) => FINAL.includes(row?.status ?? ''),
    timeoutMs,
  )
}

function processing(id: string): Promise<DocumentRow | undefined> {
  return until(
    `document ${id} to be processing`,
    () => documentRow(id),
    (row) => row?.status === 'processing',
  )
}

/** `node local/worker.ts` in its own process, with this file's services. */
function spawnWorkerProcess(env: Record<string, string> = {}): {
  child: ChildProcess
  output: () => string
} {
  const child = spawn(process.execPath, [path.join(REPO, 'local/worker.ts')], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  return { child, output: () => output }
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'docservice-worker-'))
  // Under root, PostgreSQL runs as an unprivileged user that must be able to enter it.
  await chmod(root, 0o755)
  ;[postgres, s3] = await Promise.all([
    startEmbeddedPostgres({ dataDir: path.join(root, 'postgres'), ephemeral: true }),
    startEmbeddedS3({ dataDir: path.join(root, 's3'), bucket: BUCKET }),
  ])
  await useStores({ ...TEST_ENV, DATABASE_URL: postgres.url, S3_ENDPOINT: s3.url })

  const { rows } = await query<{ id: string }>(
    `INSERT INTO users (email, password_hash, quota_bytes)
     VALUES ('worker-test@example.test', 'not-a-hash', 1000000000) RETURNING id`,
  )
  ownerId = (rows[0] as { id: string }).id

  // Twenty scanned pages: several seconds of OCR, time to act while a job runs.
  const page = await corpusFile('docs/testocr.png')
  slowTiff = await sharp(Array(20).fill(page), { join: { animated: true } })
    .tiff({ compression: 'lzw' })
    .toBuffer()
})

afterEach(async () => {
  for (const running of workers.splice(0)) await running.stop()
})

afterAll(async () => {
  await stopQueue()
  await closeOcrPool()
  await leaveStores(savedEnv)
  await Promise.allSettled([s3?.stop(), postgres?.stop()])
  if (root) await rm(root, { recursive: true, force: true })
})

describe('the extraction worker', () => {
  it('reports the backlog and the age of its oldest waiting job', async () => {
    const first = await submit(await corpusFile('docs/simple.jpg'))
    const second = await submit(await corpusFile('docs/simple.webp'))

    const waiting = await queueStats()
    await worker()
    await Promise.all([finalRow(first.id), finalRow(second.id)])
    const drained = await until(
      'the backlog to drain',
      () => queueStats(),
      (stats) => stats.queued === 0 && stats.active === 0,
    )

    expect(waiting.queued).toBe(2)
    expect(waiting.oldestQueuedSeconds).toBeGreaterThanOrEqual(0)
    expect(drained.oldestQueuedSeconds).toBeNull()
  })

  it("enqueues inside the caller's transaction, so a rollback leaves no job", async () => {
    const rolledBack = randomUUID()
    const committed = randomUUID()

    const failing = withTransaction(async (client) => {
      await enqueueExtraction(rolledBack, 'rolled-back', client)
      throw new Error('the upload failed after enqueueing')
    })
    await expect(failing).rejects.toThrow('the upload failed after enqueueing')
    await withTransaction((client) => enqueueExtraction(committed, 'committed', client))
    const { rows } = await query<{ id: string }>(
      `SELECT data->>'documentId' AS id FROM pgboss.job
       WHERE name = $1 AND data->>'documentId' = ANY($2::text[])`,
      [EXTRACT_QUEUE, [rolledBack, committed]],
    )

    expect(rows.map((row) => row.id)).toEqual([committed])
  })

  it('extracts queued documents and records text, source, pages and reason', async () => {
    await worker()
    const cases = [
      { file: 'docs/minimal-document.pdf', status: 'done', source: 'pdf-text-layer' },
      { file: 'docs/testocr.png', status: 'done', source: 'ocr' },
      { file: 'docs/libreoffice-writer-password.pdf', status: 'skipped', source: 'none' },
      { file: 'bad/truncated.pdf', status: 'failed', source: 'none' },
    ]

    const submitted = await Promise.all(
      cases.map(async (entry) => ({
        entry,
        ...(await submit(await corpusFile(entry.file))),
      })),
    )
    const rows = await Promise.all(submitted.map(({ id }) => finalRow(id)))

    rows.forEach((row, index) => {
      const { entry } = submitted[index] as (typeof submitted)[number]
      expect(row, entry.file).toMatchObject({
        status: entry.status,
        text_source: entry.source,
        attempts: 1,
      })
      expect(row?.extracted_at, entry.file).toBeInstanceOf(Date)
    })
    expect(normalise(rows[0]?.extracted_text ?? null)).toContain(
      'lorem ipsum dolor sit amet',
    )
    expect(rows[0]?.pages).toBe(1)
    expect(normalise(rows[1]?.extracted_text ?? null)).toContain('quick brown dog')
    expect(rows[2]?.status_reason).toMatch(/encrypted/)
    expect(rows[3]?.status_reason).toMatch(/PDF cannot be read/)
  })

  it('leaves a document deleted during its extraction deleted', async () => {
    await worker()
    const { id, jobId } = await submit(slowTiff)
    await processing(id)

    await query('DELETE FROM documents WHERE id = $1', [id])
    const job = await until(
      `job ${jobId} to complete`,
      () => jobState(jobId),
      (state) => state?.state === 'completed',
    )

    expect(await documentRow(id)).toBeUndefined()
    expect(job?.output).toMatchObject({ documentId: id, outcome: 'gone' })
  })

  it('ends a job that keeps failing as failed after a bounded number of tries', async () => {
    await worker()

    // The row exists but its object never reached storage: every attempt fails.
    const { id, jobId } = await submit(await corpusFile('docs/testocr.png'), {
      store: false,
    })
    const row = await finalRow(id)
    const job = await until(
      `job ${jobId} to fail`,
      () => jobState(jobId),
      (state) => state?.state === 'failed',
    )

    expect(row).toMatchObject({ status: 'failed', attempts: 3, text_source: 'none' })
    expect(row?.status_reason).toBe(
      'extraction failed after 3 attempt(s): the stored file could not be read (NoSuchKey)',
    )
    expect(job?.state).toBe('failed')
  })

  it('releases the running job on a graceful stop, and the next worker finishes it', async () => {
    const first = await worker({ shutdownGraceMs: 100 })
    const { id } = await submit(slowTiff)
    await processing(id)

    await first.stop()
    const released = await documentRow(id)
    await worker()
    const row = await finalRow(id)

    expect(released?.status).toBe('pending')
    expect(released?.status_reason).toMatch(/^attempt 1 of 3 failed .*; retrying$/)
    expect(row).toMatchObject({
      status: 'done',
      attempts: 2,
      pages: 20,
      text_source: 'ocr',
    })
    expect(normalise(row?.extracted_text ?? null)).toContain('quick brown dog')
  })

  it('picks up again the job of a worker killed mid-job, and ends it done', async () => {
    const { child, output } = spawnWorkerProcess()
    const exited = once(child, 'exit')
    const { id, jobId } = await submit(slowTiff)
    await processing(id)
    const before = await jobState(jobId)

    child.kill('SIGKILL')
    const [code, signal] = await exited
    await worker()
    const row = await finalRow(id, 90_000)

    expect(before?.state, output()).toBe('active')
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGKILL' })
    expect(row).toMatchObject({ status: 'done', attempts: 2, pages: 20 })
    expect(normalise(row?.extracted_text ?? null)).toContain('quick brown dog')
  })

  it('runs as its own process and stops cleanly on SIGTERM', async () => {
    const { child, output } = spawnWorkerProcess({ LOG_LEVEL: 'INFO' })
    const exited = once(child, 'exit')
    await until(
      'the worker process to start',
      async () => output(),
      (text) => text.includes('"message":"worker started"'),
    )

    child.kill('SIGTERM')
    const [code] = await exited

    expect(code, output()).toBe(0)
    expect(output()).toContain('"message":"worker stopped"')
  })
})

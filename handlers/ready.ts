import { HeadBucketCommand } from '@aws-sdk/client-s3'
import { getConfig } from '../lib/config.ts'
import { getPool, query } from '../lib/db.ts'
import { HttpError } from '../lib/errors.ts'
import { endpoint, json } from '../lib/http.ts'
import type { RequestLog } from '../lib/logger.ts'
import { pendingMigrations } from '../lib/migrate.ts'
import {
  EXTRACT_DEAD_LETTER_QUEUE,
  EXTRACT_QUEUE,
  type QueueStats,
  queueStats,
} from '../lib/queue.ts'
import { getS3 } from '../lib/storage.ts'

/** Each dependency gets this long to answer; the function's own budget is 5 s. */
const CHECK_TIMEOUT_MS = 2_000
const QUEUES = [EXTRACT_QUEUE, EXTRACT_DEAD_LETTER_QUEUE]

type Check = { ok: boolean; ms: number; error?: string; [field: string]: unknown }

class CheckTimeout extends Error {}

/**
 * A short reason for the body: the error's code or name, never its message (the endpoint
 * is public, and messages name hosts and ports). The whole error goes to the log.
 */
function reason(error: unknown): string {
  if (error instanceof CheckTimeout) return 'timeout'
  const code = (error as { code?: unknown })?.code
  if (typeof code === 'string') return code
  return error instanceof Error && error.name !== 'Error' ? error.name : 'error'
}

/** Runs one probe within the timeout; its fields join the result when it succeeds. */
async function check(
  name: string,
  log: RequestLog,
  probe: (signal: AbortSignal) => Promise<Record<string, unknown> | undefined>,
): Promise<Check> {
  const started = performance.now()
  const signal = AbortSignal.timeout(CHECK_TIMEOUT_MS)
  const timedOut = new Promise<never>((_, reject) => {
    signal.addEventListener('abort', () => reject(new CheckTimeout()), { once: true })
  })
  try {
    const fields = await Promise.race([probe(signal), timedOut])
    const ms = Math.round(performance.now() - started)
    return { ok: fields?.ok !== false, ms, ...fields }
  } catch (error) {
    log.warn('readiness check failed', { check: name, error })
    return {
      ok: false,
      ms: Math.round(performance.now() - started),
      error: reason(error),
    }
  }
}

/**
 * Readiness: PostgreSQL answers, every migration is applied, the bucket is reachable and
 * the job queue exists. The body carries the extraction backlog for dashboards and
 * operators; any failed check makes it a 503 problem with the same fields.
 */
export const handler = endpoint(
  { name: 'ready', auth: false },
  async function ready({ log }) {
    let backlog: QueueStats | undefined
    const [database, migrations, storage, queue] = await Promise.all([
      check('database', log, async () => {
        await query('SELECT 1')
        return undefined
      }),
      check('migrations', log, async () => {
        const pending = await pendingMigrations(getPool())
        return { ok: pending.length === 0, pending }
      }),
      check('storage', log, async (signal) => {
        const bucket = getConfig().S3_BUCKET
        await getS3().send(new HeadBucketCommand({ Bucket: bucket }), {
          abortSignal: signal,
        })
        return { bucket }
      }),
      check('queue', log, async () => {
        const { rows } = await query<{ name: string }>(
          'SELECT name FROM pgboss.queue WHERE name = ANY($1)',
          [QUEUES],
        )
        const missing = QUEUES.filter((name) => !rows.some((row) => row.name === name))
        backlog = await queueStats()
        return missing.length > 0 ? { ok: false, error: 'queue_missing', missing } : {}
      }),
    ])
    const checks = { database, migrations, storage, queue }
    const body = {
      checks,
      backlog: backlog ?? { queued: null, active: null, oldestQueuedSeconds: null },
    }
    const failed = Object.entries(checks)
      .filter(([, result]) => !result.ok)
      .map(([name]) => name)
    if (failed.length > 0) {
      throw new HttpError(503, 'not_ready', {
        detail: `Not ready: ${failed.join(', ')}`,
        details: { status: 'not_ready', ...body },
        headers: { 'Retry-After': '5', 'Cache-Control': 'no-store' },
        expose: true,
      })
    }
    return json(200, { status: 'ready', ...body }, { 'Cache-Control': 'no-store' })
  },
)

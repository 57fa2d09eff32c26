import type pg from 'pg'
import { type Db, PgBoss, type Queue } from 'pg-boss'
import { type Config, getConfig } from './config.ts'
import { query, translateDbError } from './db.ts'
import { createLogger } from './logger.ts'

/** Extraction jobs: one per uploaded document. */
export const EXTRACT_QUEUE = 'document-extraction'
/** Where pg-boss moves an extraction job whose attempts are all used up. */
export const EXTRACT_DEAD_LETTER_QUEUE = 'document-extraction-dead'

export type ExtractJobData = { documentId: string; correlationId: string }

export type QueueStats = {
  /** Jobs waiting to run, retries included. */
  queued: number
  /** Jobs a worker holds right now. */
  active: number
  /** Age of the oldest waiting job, in seconds; null when none waits. */
  oldestQueuedSeconds: number | null
}

// Past the extraction deadline, the job still needs time to read the object and write
// the row; a job active longer than both is presumed lost and retried.
const EXPIRY_MARGIN_SECONDS = 60
const RETRY_DELAY_MAX_SECONDS = 300
// pg-boss's own tables live in this schema (its default).
const SCHEMA = 'pgboss'

let logger: ReturnType<typeof createLogger> | undefined

function log(): ReturnType<typeof createLogger> {
  logger ??= createLogger('queue')
  return logger
}

let boss: PgBoss | undefined
let starting: Promise<PgBoss> | undefined

function extractQueueOptions(config: Config): Omit<Queue, 'name'> {
  return {
    retryLimit: config.EXTRACT_MAX_ATTEMPTS - 1,
    retryDelay: config.EXTRACT_RETRY_DELAY_SECONDS,
    retryBackoff: true,
    retryDelayMax: RETRY_DELAY_MAX_SECONDS,
    expireInSeconds: Math.ceil(config.EXTRACT_TIMEOUT_MS / 1000) + EXPIRY_MARGIN_SECONDS,
    heartbeatSeconds: config.EXTRACT_HEARTBEAT_SECONDS,
    deadLetter: EXTRACT_DEAD_LETTER_QUEUE,
    notify: true,
  }
}

/** Creates both queues, then applies the current configuration to existing ones. */
async function ensureQueues(instance: PgBoss, config: Config): Promise<void> {
  await instance.createQueue(EXTRACT_DEAD_LETTER_QUEUE, { retryLimit: 5, retryDelay: 5 })
  const options = extractQueueOptions(config)
  await instance.createQueue(EXTRACT_QUEUE, options)
  await instance.updateQueue(EXTRACT_QUEUE, options)
}

async function open(options: { listen: boolean }): Promise<PgBoss> {
  const config = getConfig()
  if (!config.DATABASE_URL) throw new Error('DATABASE_URL is not set')

  const instance = new PgBoss({
    connectionString: config.DATABASE_URL,
    schema: SCHEMA,
    max: 4,
    application_name: 'docservice-queue',
    connectionTimeoutMillis: 5_000,
    useListenNotify: options.listen,
    schedule: false,
    superviseIntervalSeconds: config.QUEUE_SUPERVISE_SECONDS,
    monitorIntervalSeconds: config.QUEUE_SUPERVISE_SECONDS,
  })
  // pg-boss reports a lost connection as an event; unheard, it would end the process.
  instance.on('error', (error) => log().error('job queue error', { error }))
  instance.on('warning', (warning) => log().warn('job queue warning', { warning }))

  try {
    await instance.start()
    await ensureQueues(instance, config)
  } catch (error) {
    await instance.stop({ graceful: false }).catch(() => {})
    throw error
  }
  return instance
}

/**
 * Starts the process's job queue (idempotent): installs or migrates pg-boss's schema,
 * creates the queues with the configured retries, backoff, expiry and heartbeat, and
 * supervises expired jobs. `listen` wakes workers by LISTEN/NOTIFY instead of polling;
 * only the worker asks for it.
 */
export async function startQueue(options: { listen?: boolean } = {}): Promise<PgBoss> {
  if (boss) return boss
  starting ??= open({ listen: options.listen ?? false })
    .then((instance) => {
      boss = instance
      return instance
    })
    .finally(() => {
      starting = undefined
    })
  return starting
}

export function isQueueStarted(): boolean {
  return boss !== undefined
}

/** Stops the queue: workers registered on it stop fetching; the pool closes. */
export async function stopQueue(options: { timeoutMs?: number } = {}): Promise<void> {
  const instance = boss ?? (await starting?.catch(() => undefined))
  boss = undefined
  await instance?.stop({ graceful: true, timeout: options.timeoutMs ?? 5_000 })
}

function inTransaction(client: pg.PoolClient): Db {
  return {
    executeSql: (text, values) => client.query(text, values as unknown[]),
  }
}

/**
 * Enqueues the extraction of a document. With a client, the job is written inside the
 * caller's transaction: it exists exactly when the document row commits.
 */
export async function enqueueExtraction(
  documentId: string,
  correlationId: string,
  client?: pg.PoolClient,
): Promise<string | null> {
  const data: ExtractJobData = { documentId, correlationId }
  try {
    const instance = await startQueue()
    return await instance.send(
      EXTRACT_QUEUE,
      data,
      client ? { db: inTransaction(client) } : {},
    )
  } catch (error) {
    throw translateDbError(error)
  }
}

/** The extraction backlog, read straight from pg-boss's table for /ready. */
export async function queueStats(): Promise<QueueStats> {
  const { rows } = await query<{ queued: number; active: number; oldest: number | null }>(
    `SELECT count(*) FILTER (WHERE state IN ('created', 'retry'))::int AS queued,
            count(*) FILTER (WHERE state = 'active')::int AS active,
            extract(epoch FROM now() - min(created_on)
              FILTER (WHERE state IN ('created', 'retry')))::float8 AS oldest
     FROM ${SCHEMA}.job WHERE name = $1`,
    [EXTRACT_QUEUE],
  )
  const row = rows[0]
  return {
    queued: row?.queued ?? 0,
    active: row?.active ?? 0,
    oldestQueuedSeconds:
      row?.oldest === null || row?.oldest === undefined ? null : Math.round(row.oldest),
  }
}

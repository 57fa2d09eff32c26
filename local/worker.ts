import type { Logger } from '@aws-lambda-powertools/logger'
import type { JobWithMetadata } from 'pg-boss'
import {
  abandonExtraction,
  type ExtractEvent,
  handler as extractHandler,
  type JobContext,
} from '../handlers/jobs/extract.ts'
import { getConfig } from '../lib/config.ts'
import { closePool } from '../lib/db.ts'
import { closeOcrPool } from '../lib/extraction/ocr.ts'
import { lowerProcessPriority } from '../lib/extraction/priority.ts'
import { createLogger } from '../lib/logger.ts'
import {
  EXTRACT_DEAD_LETTER_QUEUE,
  EXTRACT_QUEUE,
  type ExtractJobData,
  isQueueStarted,
  startQueue,
  stopQueue,
} from '../lib/queue.ts'
import { functionSpec } from '../lib/routes.ts'
import { resetStorage } from '../lib/storage.ts'
import { lambdaContext } from './invoker.ts'

export type WorkerOptions = {
  /** Jobs run at once; WORKER_CONCURRENCY by default. */
  concurrency?: number
  /** How long stop() lets running jobs finish before releasing them. */
  shutdownGraceMs?: number
}

export type RunningWorker = { stop(): Promise<void> }

const DEFAULT_SHUTDOWN_GRACE_MS = 10_000
// After the grace period, an interrupted job gets this long to put its document back.
const RELEASE_MS = 5_000
const START_RETRY_MS = 2_000

type Running = { controller: AbortController; settled: Promise<unknown> }

async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  const all = Promise.allSettled(promises).then(() => true)
  try {
    return await Promise.race([all, timeout])
  } finally {
    clearTimeout(timer)
  }
}

// pg-boss stores a failed attempt's output as the error, or as { value: message }.
function outputMessage(output: unknown): string | undefined {
  const value = (output as { value?: unknown } | null)?.value ?? output
  if (typeof value === 'string') return value
  const message = (value as { message?: unknown } | null)?.message
  return typeof message === 'string' ? message : undefined
}

/**
 * Takes extraction jobs from the queue and runs the extraction handler on each,
 * in-process, at most `concurrency` at a time. stop() takes no new job, lets running
 * ones finish within the grace period, then interrupts the rest: their documents go back
 * to `pending` and their jobs back to the queue.
 */
export async function startWorker(options: WorkerOptions = {}): Promise<RunningWorker> {
  const config = getConfig()
  const concurrency = options.concurrency ?? config.WORKER_CONCURRENCY
  const graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS
  const log = createLogger('worker')
  const spec = functionSpec('jobs-extract')
  const ownsQueue = !isQueueStarted()
  const boss = await startQueue({ listen: true })
  const running = new Map<string, Running>()

  async function runExtraction(job: JobWithMetadata<ExtractJobData>): Promise<unknown> {
    const controller = new AbortController()
    const budgetMs = Math.min(spec.timeoutMs, job.expireInSeconds * 1000)
    const context: JobContext = {
      ...lambdaContext(spec, budgetMs),
      awsRequestId: job.id,
      signal: AbortSignal.any([controller.signal, job.signal]),
    }
    const event: ExtractEvent = {
      documentId: job.data.documentId,
      correlationId: job.data.correlationId,
      attempt: job.retryCount + 1,
      maxAttempts: job.retryLimit + 1,
    }

    const outcome = extractHandler(event, context)
    running.set(job.id, { controller, settled: outcome.catch(() => {}) })
    try {
      return await outcome
    } finally {
      running.delete(job.id)
    }
  }

  async function abandon(job: JobWithMetadata<ExtractJobData>): Promise<void> {
    const cause = outputMessage(job.sourceOutput)
    if (await abandonExtraction(job.data.documentId, cause)) {
      log.warn('extraction abandoned after its last attempt', {
        document_id: job.data.documentId,
        correlation_id: job.data.correlationId,
        cause,
      })
    }
  }

  // One registration per lane, so a lane that has just finished a job can be woken to
  // fetch the next at once: pg-boss otherwise waits out its polling interval after every
  // job, which would hold a backlog to one job per interval.
  for (let lane = 0; lane < concurrency; lane++) {
    let laneId: string | undefined
    laneId = await boss.work(
      EXTRACT_QUEUE,
      {
        includeMetadata: true,
        // New jobs wake the worker through LISTEN/NOTIFY; retries that come due do not,
        // so the interval bounds how late a retry starts.
        notifyPollingIntervalSeconds: 2,
        pollingIntervalSeconds: 1,
      },
      async ([job]: JobWithMetadata<ExtractJobData>[]) => {
        try {
          return job ? await runExtraction(job) : undefined
        } finally {
          if (laneId) boss.notifyWorker(laneId)
        }
      },
    )
  }
  await boss.work(
    EXTRACT_DEAD_LETTER_QUEUE,
    { includeMetadata: true, pollingIntervalSeconds: 5 },
    async ([job]: JobWithMetadata<ExtractJobData>[]) => (job ? abandon(job) : undefined),
  )
  log.info('worker started', { concurrency, ocr_workers: config.OCR_WORKERS })

  let stopping: Promise<void> | undefined
  async function stop(): Promise<void> {
    stopping ??= (async () => {
      await Promise.all([
        boss.offWork(EXTRACT_QUEUE, { wait: false }),
        boss.offWork(EXTRACT_DEAD_LETTER_QUEUE, { wait: false }),
      ])
      const inFlight = () => [...running.values()].map((job) => job.settled)
      if (!(await settledWithin(inFlight(), graceMs))) {
        log.warn('releasing jobs still running at shutdown', { jobs: running.size })
        for (const job of running.values()) {
          job.controller.abort(
            new DOMException('the worker is shutting down', 'AbortError'),
          )
        }
        await settledWithin(inFlight(), RELEASE_MS)
      }
      if (ownsQueue) await stopQueue()
      await closeOcrPool()
      log.info('worker stopped')
    })()
    return stopping
  }

  return { stop }
}

async function startWithRetries(
  log: Logger,
  stopped: () => boolean,
): Promise<RunningWorker> {
  while (true) {
    try {
      return await startWorker()
    } catch (error) {
      if (stopped()) throw error
      // The database may still be starting (containers): keep trying until stopped.
      log.error('worker could not start; retrying', { error: error as Error })
      await new Promise((resolve) => setTimeout(resolve, START_RETRY_MS))
    }
  }
}

/** `node local/worker.ts`: the worker as its own process, below the API's priority. */
async function main(): Promise<void> {
  lowerProcessPriority()
  const log = createLogger('worker')
  // The worker never dies on a document: anything that escapes is logged, not fatal.
  process.on('uncaughtException', (error) => log.error('uncaught exception', { error }))
  process.on('unhandledRejection', (reason) =>
    log.error('unhandled rejection', { error: reason as Error }),
  )

  let shuttingDown = false
  let worker: RunningWorker | undefined
  async function shutdown(signal: string): Promise<void> {
    if (shuttingDown) return
    shuttingDown = true
    log.info('shutting down', { signal })
    await worker?.stop()
    await closePool().catch(() => {})
    resetStorage()
    process.exit(0)
  }
  process.once('SIGTERM', () => void shutdown('SIGTERM'))
  process.once('SIGINT', () => void shutdown('SIGINT'))

  worker = await startWithRetries(log, () => shuttingDown)
}

if (import.meta.main) await main()

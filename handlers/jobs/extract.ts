import type { Logger } from '@aws-lambda-powertools/logger'
import { S3ServiceException } from '@aws-sdk/client-s3'
import middy from '@middy/core'
import type { Context } from 'aws-lambda'
import { z } from 'zod'
import { getConfig } from '../../lib/config.ts'
import { query } from '../../lib/db.ts'
import { HttpError } from '../../lib/errors.ts'
import { type ExtractionResult, extractDocument } from '../../lib/extraction/extract.ts'
import { OcrError } from '../../lib/extraction/ocr.ts'
import { createLogger } from '../../lib/logger.ts'
import { getObject } from '../../lib/storage.ts'

export type ExtractEvent = {
  documentId: string
  correlationId: string
  /** 1 for the first try. Without it the invocation is taken as the only one. */
  attempt?: number
  maxAttempts?: number
}

export type ExtractOutcome = {
  documentId?: string
  outcome: 'extracted' | 'gone' | 'already-finished' | 'invalid-event'
  status?: ExtractionResult['status']
}

/** A Lambda context; the in-process worker adds a signal it aborts on shutdown. */
export type JobContext = Context & { signal?: AbortSignal }

const eventSchema = z.object({
  documentId: z.uuid(),
  correlationId: z.string().min(1).max(128),
  attempt: z.number().int().min(1).optional(),
  maxAttempts: z.number().int().min(1).optional(),
})

// Kept back from the invocation's deadline so the outcome is always written.
const WRITE_MARGIN_MS = 10_000
const MIN_EXTRACTION_MS = 1_000
const MAX_REASON_LENGTH = 500

let baseLogger: Logger | undefined

function jobLogger(event: Partial<ExtractEvent>, context: Context): Logger {
  baseLogger ??= createLogger('jobs-extract')
  // A child per invocation: jobs running side by side must not share log keys.
  return baseLogger.createChild({
    persistentKeys: {
      correlation_id: event.correlationId,
      document_id: event.documentId,
      attempt: event.attempt,
      job_id: context.awsRequestId,
    },
  })
}

function stripNul(text: string): string {
  return text.replaceAll('\u0000', '')
}

/** Takes the document for this attempt, unless it is gone or already finished. */
async function claim(
  documentId: string,
): Promise<{ object_key: string; media_type: string } | 'gone' | 'already-finished'> {
  const { rows } = await query<{ object_key: string; media_type: string }>(
    `UPDATE documents
     SET status = 'processing', status_reason = NULL, attempts = attempts + 1, updated_at = now()
     WHERE id = $1 AND status IN ('pending', 'processing')
     RETURNING object_key, media_type`,
    [documentId],
  )
  if (rows[0]) return rows[0]

  const existing = await query('SELECT 1 FROM documents WHERE id = $1', [documentId])
  return existing.rowCount === 0 ? 'gone' : 'already-finished'
}

async function record(documentId: string, result: ExtractionResult): Promise<boolean> {
  const done = result.status === 'done'
  const { rowCount } = await query(
    `UPDATE documents
     SET status = $2, status_reason = $3, extracted_text = $4, text_source = $5, pages = $6,
         extracted_at = now(), updated_at = now()
     WHERE id = $1`,
    [
      documentId,
      result.status,
      result.reason ? stripNul(result.reason).slice(0, MAX_REASON_LENGTH) : null,
      done ? stripNul(result.text) : null,
      result.source,
      result.pages,
    ],
  )
  return rowCount === 1
}

/** What a reader of the document may be told about a failure: nothing internal. */
export function publicReason(error: unknown): string {
  if (error instanceof HttpError && error.code === 'storage_unavailable') {
    return 'object storage was unavailable'
  }
  if (error instanceof HttpError && error.code === 'database_unavailable') {
    return 'the database was unavailable'
  }
  if (error instanceof S3ServiceException) {
    return `the stored file could not be read (${error.name})`
  }
  if (error instanceof OcrError) return 'the OCR engine failed'
  if (
    error instanceof Error &&
    (error.name === 'AbortError' || error.name === 'TimeoutError')
  ) {
    return 'the worker stopped during extraction'
  }
  return 'an unexpected error occurred'
}

/**
 * After a failure worth retrying: back to `pending` while attempts remain, `failed`
 * with the reason on the last one. Never left `processing`.
 */
async function release(
  documentId: string,
  error: unknown,
  attempt: number,
  maxAttempts: number,
  log: Logger,
): Promise<void> {
  const reason = publicReason(error)
  const last = attempt >= maxAttempts
  try {
    if (last) {
      await query(
        `UPDATE documents
         SET status = 'failed', status_reason = $2, text_source = 'none',
             extracted_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'processing'`,
        [documentId, `extraction failed after ${attempt} attempt(s): ${reason}`],
      )
    } else {
      await query(
        `UPDATE documents SET status = 'pending', status_reason = $2, updated_at = now()
         WHERE id = $1 AND status = 'processing'`,
        [documentId, `attempt ${attempt} of ${maxAttempts} failed (${reason}); retrying`],
      )
    }
  } catch (writeError) {
    // The queue retries the job, or moves it to the dead letter queue, which fails it.
    log.warn('could not record the failed attempt', { error: writeError as Error })
  }
}

function extractionBudget(context: Context): number {
  const configured = getConfig().EXTRACT_TIMEOUT_MS
  const remaining = context.getRemainingTimeInMillis?.()
  if (remaining === undefined) return configured
  return Math.max(MIN_EXTRACTION_MS, Math.min(configured, remaining - WRITE_MARGIN_MS))
}

async function extractJob(
  event: ExtractEvent,
  context: JobContext,
): Promise<ExtractOutcome> {
  const parsed = eventSchema.safeParse(event)
  const log = jobLogger(parsed.success ? parsed.data : {}, context)
  if (!parsed.success) {
    // Retrying cannot fix an event: report it and let the job end.
    log.error('invalid extraction event', { issues: parsed.error.issues })
    return { outcome: 'invalid-event' }
  }
  const { documentId, attempt = 1, maxAttempts = 1 } = parsed.data

  const claimed = await claim(documentId)
  if (typeof claimed === 'string') {
    log.info('nothing to extract', { outcome: claimed })
    return { documentId, outcome: claimed }
  }

  const started = performance.now()
  try {
    const bytes = await getObject(claimed.object_key)
    const result = await extractDocument(bytes, claimed.media_type, {
      signal: context.signal,
      limits: { timeoutMs: extractionBudget(context) },
    })
    const written = await record(documentId, result)
    log.info('extraction finished', {
      status: result.status,
      reason: result.reason,
      text_source: result.source,
      pages: result.pages,
      characters: result.text.length,
      duration_ms: Math.round(performance.now() - started),
      ...(written ? {} : { outcome: 'gone' }),
    })
    return { documentId, outcome: written ? 'extracted' : 'gone', status: result.status }
  } catch (error) {
    log.error('extraction attempt failed', {
      error: error as Error,
      attempts_left: Math.max(0, maxAttempts - attempt),
    })
    await release(documentId, error, attempt, maxAttempts, log)
    throw error
  }
}

/**
 * Extracts the text of one document: loads its row (a deleted document is a no-op),
 * marks it `processing`, reads the object, extracts and writes the outcome. Failures
 * the document causes end `failed` or `skipped` at once; others are rethrown so the
 * queue retries, and the last attempt records `failed` with its reason.
 */
export const handler = middy<ExtractEvent, ExtractOutcome, Error, JobContext>({
  // The handler keeps its own deadline, so the outcome is written before the invocation's.
  timeoutEarlyInMillis: 0,
}).handler(extractJob)

// pg-boss's own words for a lost attempt, in terms a document's reader understands.
const LOST_ATTEMPT: Record<string, string> = {
  'job heartbeat timeout': 'the worker stopped responding',
  'job timed out': 'the worker ran past its time limit',
  'pg-boss shut down while active': 'the worker shut down',
}

/**
 * For a job whose attempts are all used up without an outcome being written (its
 * worker killed on the last try): the document ends `failed` instead of `processing`.
 */
export async function abandonExtraction(
  documentId: string,
  cause?: string,
): Promise<boolean> {
  const detail = cause ? LOST_ATTEMPT[cause] : undefined
  const { rowCount } = await query(
    `UPDATE documents
     SET status = 'failed', status_reason = $2, text_source = 'none',
         extracted_at = now(), updated_at = now()
     WHERE id = $1 AND status IN ('pending', 'processing')`,
    [
      documentId,
      `extraction did not complete after every attempt${detail ? ` (${detail})` : ''}`,
    ],
  )
  return rowCount === 1
}

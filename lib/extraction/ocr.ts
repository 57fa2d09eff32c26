import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Worker as NodeWorker } from 'node:worker_threads'
import Tesseract from 'tesseract.js'
import { getConfig } from '../config.ts'

/** What OCR found on one image. */
export type OcrPage = {
  /** The meaningful text: lines with at least one confident word (see MIN_WORD_CONFIDENCE). */
  text: string
  /** Mean confidence (0-100) of the kept words; 0 when none was kept. */
  confidence: number
  words: number
}

export type OcrPool = {
  readonly size: number
  /** OCR of one PNG image; rejects with the signal's reason when it aborts. */
  recognize(image: Buffer, signal?: AbortSignal): Promise<OcrPage>
  /** Stops every OCR thread; queued and running recognitions reject. */
  terminate(): Promise<void>
}

/** A failure of the OCR engine itself, never of the document: worth retrying. */
export class OcrError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'OcrError'
  }
}

/**
 * Tesseract reports words it barely recognised with confidences near zero; on drawings,
 * stamps and noise it reports nothing else. Words below this are dropped, and a line
 * is kept only when one of its remaining words has a letter or a digit, so a drawing
 * read as `| |` or `~ gr` yields no text. Real but poorly printed words (30-60) stay.
 */
export const MIN_WORD_CONFIDENCE = 30
const HAS_LETTER_OR_DIGIT = /[\p{L}\p{N}]/u

const require = createRequire(import.meta.url)
// The LSTM-only "best_int" English model shipped in @tesseract.js-data/eng: read from
// disk, so nothing is ever downloaded.
const ENGLISH_DATA = path.join(
  path.dirname(require.resolve('@tesseract.js-data/eng/package.json')),
  '4.0.0_best_int',
)
// Our thread entry lowers OCR's priority; a bundle that did not copy it falls back to
// tesseract.js's own entry.
const THREAD_ENTRY = fileURLToPath(new URL('./ocr-thread.ts', import.meta.url))

type Task = {
  image: Buffer
  signal?: AbortSignal
  resolve: (page: OcrPage) => void
  reject: (error: unknown) => void
  onAbort: () => void
}

type Engine = {
  worker: Tesseract.Worker
  /** Rejects when the thread ends, whoever ended it. */
  stopped: Promise<never>
  /** Ends the thread at once, even in the middle of a recognition. */
  kill(): Promise<void>
}

type Slot = { engine?: Promise<Engine>; busy: boolean }

async function startEngine(langPath: string): Promise<Engine> {
  let worker: Tesseract.Worker
  try {
    worker = await Tesseract.createWorker('eng', Tesseract.OEM.LSTM_ONLY, {
      langPath,
      gzip: true,
      // No cache: the model is read from the package, never written elsewhere.
      cacheMethod: 'none',
      ...(existsSync(THREAD_ENTRY) ? { workerPath: THREAD_ENTRY } : {}),
      logger: () => {},
      // Without a handler, tesseract.js throws engine errors from a message listener,
      // where nothing can catch them.
      errorHandler: () => {},
    })
    // Tesseract's warnings ("Invalid resolution", "Image too small") would otherwise go
    // to stdout between the JSON log lines.
    await worker.setParameters({ debug_file: '/dev/null' })
  } catch (error) {
    throw new OcrError('the OCR engine could not start', { cause: error })
  }

  // A thread that dies (out of memory in WebAssembly, a crash) leaves tesseract.js's
  // promises pending forever; this one settles instead.
  const thread = (worker as unknown as { worker: NodeWorker }).worker
  const stopped = new Promise<never>((_, reject) => {
    thread.once('error', (error) =>
      reject(new OcrError('the OCR thread failed', { cause: error })),
    )
    thread.once('exit', (code) =>
      reject(new OcrError(`the OCR thread exited (code ${code})`)),
    )
  })
  stopped.catch(() => {})
  // The thread itself, not worker.terminate(): tesseract.js's own terminate makes a
  // recognition already on its way fail outside any promise chain.
  const kill = async () => {
    await thread.terminate()
  }
  return { worker, stopped, kill }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError')
}

/** A promise rejecting when the signal aborts, and a way to stop listening. */
function watchAbort(signal: AbortSignal | undefined): {
  aborted: Promise<never>[]
  dispose(): void
} {
  if (!signal) return { aborted: [], dispose: () => {} }
  let onAbort = () => {}
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortReason(signal))
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
  })
  // Many pages share one document's signal: each page's listener has to go again.
  return {
    aborted: [aborted],
    dispose: () => signal.removeEventListener('abort', onAbort),
  }
}

/** Keeps the meaningful lines of a recognised page; see MIN_WORD_CONFIDENCE. */
export function meaningfulText(page: Tesseract.Page): OcrPage {
  const paragraphs: string[] = []
  let confidenceSum = 0
  let words = 0

  for (const block of page.blocks ?? []) {
    for (const paragraph of block.paragraphs) {
      const lines: string[] = []
      for (const line of paragraph.lines) {
        const kept = line.words.filter((word) => word.confidence >= MIN_WORD_CONFIDENCE)
        if (!kept.some((word) => HAS_LETTER_OR_DIGIT.test(word.text))) continue
        lines.push(kept.map((word) => word.text).join(' '))
        for (const word of kept) confidenceSum += word.confidence
        words += kept.length
      }
      if (lines.length > 0) paragraphs.push(lines.join('\n'))
    }
  }

  return {
    text: paragraphs.join('\n\n'),
    confidence: words > 0 ? Math.round(confidenceSum / words) : 0,
    words,
  }
}

/**
 * A pool of tesseract.js workers, each on its own thread, created on first use and
 * reused. Tasks queue in order; one whose signal aborts leaves the queue, and one
 * aborted while running has its thread terminated (the only way to stop tesseract
 * mid-page), so a timed-out document stops costing CPU at once.
 */
export function createOcrPool(options: { size: number; langPath?: string }): OcrPool {
  const langPath = options.langPath ?? ENGLISH_DATA
  const slots: Slot[] = Array.from({ length: options.size }, () => ({ busy: false }))
  const queue: Task[] = []
  let closed = false

  function discard(slot: Slot): void {
    const engine = slot.engine
    slot.engine = undefined
    engine?.then((started) => started.kill()).catch(() => {})
  }

  async function run(slot: Slot, task: Task): Promise<void> {
    task.signal?.removeEventListener('abort', task.onAbort)
    slot.busy = true
    try {
      task.signal?.throwIfAborted()
      slot.engine ??= startEngine(langPath)
      const engine = await slot.engine
      const recognition = engine.worker
        .recognize(task.image, {}, { text: false, blocks: true })
        .catch((error: unknown) => {
          throw new OcrError('the OCR engine failed on an image', { cause: error })
        })
      const watch = watchAbort(task.signal)
      try {
        const result = await Promise.race([recognition, engine.stopped, ...watch.aborted])
        task.resolve(meaningfulText(result.data))
      } finally {
        watch.dispose()
      }
    } catch (error) {
      // A worker that failed or was interrupted is not trusted with the next image.
      discard(slot)
      task.reject(error)
    } finally {
      slot.busy = false
      pump()
    }
  }

  function pump(): void {
    for (const slot of slots) {
      if (queue.length === 0) return
      if (slot.busy) continue
      const task = queue.shift() as Task
      void run(slot, task)
    }
  }

  function recognize(image: Buffer, signal?: AbortSignal): Promise<OcrPage> {
    if (closed) return Promise.reject(new OcrError('the OCR pool is shut down'))
    if (signal?.aborted) return Promise.reject(abortReason(signal))

    return new Promise<OcrPage>((resolve, reject) => {
      const task: Task = { image, signal, resolve, reject, onAbort: () => {} }
      task.onAbort = () => {
        const index = queue.indexOf(task)
        if (index !== -1) {
          queue.splice(index, 1)
          reject(abortReason(signal as AbortSignal))
        }
      }
      signal?.addEventListener('abort', task.onAbort, { once: true })
      queue.push(task)
      pump()
    })
  }

  async function terminate(): Promise<void> {
    closed = true
    for (const task of queue.splice(0))
      task.reject(new OcrError('the OCR pool is shut down'))
    const engines = slots
      .map((slot) => slot.engine)
      .filter((engine) => engine !== undefined)
    for (const slot of slots) slot.engine = undefined
    await Promise.allSettled(engines.map(async (engine) => (await engine).kill()))
  }

  return { size: options.size, recognize, terminate }
}

let shared: OcrPool | undefined

/** The process's OCR pool, sized by OCR_WORKERS; its threads start on first use. */
export function getOcrPool(): OcrPool {
  shared ??= createOcrPool({ size: getConfig().OCR_WORKERS })
  return shared
}

/** Stops the process's OCR threads (shutdown); a later getOcrPool() starts afresh. */
export async function closeOcrPool(): Promise<void> {
  const pool = shared
  shared = undefined
  await pool?.terminate()
}

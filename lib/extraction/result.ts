export type TextSource = 'pdf-text-layer' | 'ocr' | 'mixed' | 'none'

/** The outcome of extracting one document; `done` may still carry a note in `reason`. */
export type ExtractionResult = {
  status: 'done' | 'skipped' | 'failed'
  reason?: string
  text: string
  /** Pages in the document, processed or not; null when it could not be counted. */
  pages: number | null
  source: TextSource
}

export type ExtractionLimits = {
  /** Pages processed per document; the rest are counted but not read. */
  maxPages: number
  /** Pixels per image or page, checked before decoding. */
  maxPixels: number
  /** Time for the whole document. */
  timeoutMs: number
}

// Pages are separated by a form feed on its own line, as text tools have long done.
export const PAGE_SEPARATOR = '\n\f\n'

export function failed(reason: string, pages: number | null): ExtractionResult {
  return { status: 'failed', reason, text: '', pages, source: 'none' }
}

export function skipped(reason: string, pages: number | null): ExtractionResult {
  return { status: 'skipped', reason, text: '', pages, source: 'none' }
}

export function joinPages(texts: readonly string[]): string {
  return texts.map((text) => text.trim()).join(PAGE_SEPARATOR)
}

/** The note on a `done` document whose pages went past EXTRACT_MAX_PAGES. */
export function pageCapNote(processed: number, total: number): string | undefined {
  return processed < total
    ? `only the first ${processed} of ${total} pages were extracted (page limit)`
    : undefined
}

/**
 * Runs `work` over the items with at most `limit` running at once, results in item
 * order. After the first failure, or once the signal aborts, no further item starts.
 */
export async function withConcurrency<T, R>(
  items: readonly T[],
  limit: number,
  signal: AbortSignal,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  let stopped = false

  async function lane(): Promise<void> {
    while (!stopped && next < items.length) {
      signal.throwIfAborted()
      const index = next++
      try {
        results[index] = await work(items[index] as T, index)
      } catch (error) {
        stopped = true
        throw error
      }
    }
  }

  const lanes = Math.max(1, Math.min(limit, items.length))
  await Promise.all(Array.from({ length: lanes }, lane))
  return results
}

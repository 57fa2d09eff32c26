import { getConfig } from '../config.ts'
import { extractImage } from './image.ts'
import { getOcrPool, OcrError, type OcrPool } from './ocr.ts'
import { extractPdf } from './pdf.ts'
import type { ExtractionLimits, ExtractionResult } from './result.ts'
import { failed } from './result.ts'

export type { ExtractionLimits, ExtractionResult, TextSource } from './result.ts'

export type ExtractOptions = {
  /** Aborting it (shutdown) makes extractDocument reject with the signal's reason. */
  signal?: AbortSignal
  /** Missing limits come from the configuration (EXTRACT_MAX_PAGES and the others). */
  limits?: Partial<ExtractionLimits>
  /** Defaults to the process's pool, sized by OCR_WORKERS. */
  ocr?: OcrPool
}

const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/tiff', 'image/webp'])

function configuredLimits(): ExtractionLimits {
  const config = getConfig()
  return {
    maxPages: config.EXTRACT_MAX_PAGES,
    maxPixels: config.EXTRACT_MAX_PIXELS,
    timeoutMs: config.EXTRACT_TIMEOUT_MS,
  }
}

function resolveLimits(given: Partial<ExtractionLimits> = {}): ExtractionLimits {
  const complete =
    given.maxPages !== undefined &&
    given.maxPixels !== undefined &&
    given.timeoutMs !== undefined
  return complete ? (given as ExtractionLimits) : { ...configuredLimits(), ...given }
}

/**
 * PostgreSQL text cannot hold U+0000, and the other C0 controls that PDF text layers
 * leak (glyph codes without a Unicode mapping) are noise. Tabs, line breaks and the
 * page separator stay.
 */
export function cleanText(text: string): string {
  return (
    text
      .replace(/\r\n?/g, '\n')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
      .replace(/[\u0000-\u0008\u000b\u000e-\u001f\u007f]/g, '')
      .replace(/[ \t]+\n/g, '\n')
      .trim()
  )
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message.split('\n')[0]?.trim() || 'unknown error'
}

function untilAborted(signal: AbortSignal): { aborted: Promise<never>; dispose(): void } {
  let onAbort = () => {}
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason)
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
  })
  return { aborted, dispose: () => signal.removeEventListener('abort', onAbort) }
}

/**
 * Extracts the text of one document. It resolves with `done`, `skipped` (encrypted,
 * over a limit) or `failed` (damaged, too slow) for everything the document itself
 * causes, so those outcomes are final. It rejects only when the system failed (the OCR
 * engine) or the caller's signal aborted: a retry may then succeed.
 */
export async function extractDocument(
  bytes: Buffer,
  mediaType: string,
  options: ExtractOptions = {},
): Promise<ExtractionResult> {
  const limits = resolveLimits(options.limits)
  const deadline = AbortSignal.timeout(limits.timeoutMs)
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline

  const isPdf = mediaType === 'application/pdf'
  if (!isPdf && !IMAGE_TYPES.has(mediaType)) {
    return failed(`${mediaType} is not a type text can be extracted from`, null)
  }
  const ocr = options.ocr ?? getOcrPool()

  const work = isPdf
    ? extractPdf(bytes, { ocr, limits, signal })
    : extractImage(bytes, mediaType, { ocr, limits, signal })
  // The race answers at the deadline even while a step is still busy; that step stops
  // at its next check of the signal, and its late failure is of no interest.
  work.catch(() => {})

  const watch = untilAborted(signal)
  try {
    const result = await Promise.race([work, watch.aborted])
    return { ...result, text: cleanText(result.text) }
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason
    if (deadline.aborted) {
      return failed(
        `extraction took longer than the limit of ${limits.timeoutMs} ms`,
        null,
      )
    }
    if (error instanceof OcrError) throw error
    return failed(`extraction failed: ${describe(error)}`, null)
  } finally {
    watch.dispose()
  }
}

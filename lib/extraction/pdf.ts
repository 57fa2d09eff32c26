import type { SKRSContext2D } from '@napi-rs/canvas'
import sharp from 'sharp'
import { createIsomorphicCanvasFactory, getDocumentProxy, getResolvedPDFJS } from 'unpdf'
import { OCR_MAX_PIXELS, toOcrImage } from './image.ts'
import { OcrError, type OcrPool } from './ocr.ts'
import type { ExtractionLimits, ExtractionResult, TextSource } from './result.ts'
import { failed, joinPages, pageCapNote, skipped, withConcurrency } from './result.ts'

type PdfDocument = Awaited<ReturnType<typeof getDocumentProxy>>
type PdfPage = Awaited<ReturnType<PdfDocument['getPage']>>

/**
 * A page whose text layer has fewer letters and digits than this (a page number, a
 * stamp) is treated as having none: when it paints an image, it is rendered and OCR'd.
 */
export const MIN_TEXT_LAYER_CHARS = 16
// 300 dpi is where tesseract reads best; scans stored at a higher resolution keep theirs.
const TARGET_DPI = 300

type PageOutcome = { text: string; source: 'layer' | 'ocr' | 'empty'; error?: string }

type CanvasFactoryClass = Awaited<ReturnType<typeof createIsomorphicCanvasFactory>>
let canvasFactory: Promise<CanvasFactoryClass> | undefined
let imageOps: Promise<Set<number>> | undefined

function loadCanvasFactory(): Promise<CanvasFactoryClass> {
  canvasFactory ??= createIsomorphicCanvasFactory(() => import('@napi-rs/canvas'))
  return canvasFactory
}

/** pdf.js operators that paint an image (XObject, inline, masks, repeated). */
function loadImageOps(): Promise<Set<number>> {
  imageOps ??= getResolvedPDFJS().then(
    ({ OPS }) =>
      new Set(
        Object.entries(OPS as Record<string, number>)
          .filter(([name]) => name.startsWith('paint') && name.includes('Image'))
          .map(([, code]) => code),
      ),
  )
  return imageOps
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message.split('\n')[0]?.trim() || 'unknown error'
}

function countLettersAndDigits(text: string): number {
  return text.match(/[\p{L}\p{N}]/gu)?.length ?? 0
}

async function textLayer(page: PdfPage): Promise<string> {
  const content = await page.getTextContent()
  let text = ''
  for (const item of content.items) {
    if (!('str' in item)) continue
    text += item.str
    if (item.hasEOL) text += '\n'
  }
  return text
}

type ImageSize = { width: number; height: number }

/** The pixel sizes of the images a page paints; empty when it paints none. */
async function paintedImages(page: PdfPage): Promise<ImageSize[]> {
  const ops = await loadImageOps()
  const list = await page.getOperatorList()
  const sizes: ImageSize[] = []
  list.fnArray.forEach((op, index) => {
    if (!ops.has(op)) return
    const args = (list.argsArray[index] ?? []) as unknown[]
    const [first, width, height] = args
    if (typeof width === 'number' && typeof height === 'number') {
      sizes.push({ width, height })
    } else {
      const data = first as Partial<ImageSize> | undefined
      sizes.push({ width: data?.width ?? 0, height: data?.height ?? 0 })
    }
  })
  return sizes
}

/**
 * Renders a page for OCR at 300 dpi, or at its scans' own resolution when higher,
 * within the pixel budget.
 */
async function renderForOcr(
  page: PdfPage,
  images: ImageSize[],
  maxPixels: number,
): Promise<Buffer> {
  const base = page.getViewport({ scale: 1 })
  const area = Math.max(1, base.width * base.height)
  const native = Math.max(
    0,
    ...images.map((image) =>
      Math.max(
        image.width / Math.max(1, base.width),
        image.height / Math.max(1, base.height),
      ),
    ),
  )
  const budget = Math.min(maxPixels, OCR_MAX_PIXELS)
  const scale = Math.min(Math.max(TARGET_DPI / 72, native), Math.sqrt(budget / area))
  const viewport = page.getViewport({ scale })
  const width = Math.max(1, Math.floor(viewport.width))
  const height = Math.max(1, Math.floor(viewport.height))

  const Factory = await loadCanvasFactory()
  const factory = new Factory()
  const drawing = factory.create(width, height)
  try {
    const context = drawing.context as SKRSContext2D
    context.fillStyle = '#ffffff'
    context.fillRect(0, 0, width, height)
    await page.render({
      canvas: drawing.canvas as never,
      canvasContext: context as never,
      viewport,
    }).promise
    const pixels = context.getImageData(0, 0, width, height).data
    const raw = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength)
    return await toOcrImage(
      sharp(raw, { raw: { width, height, channels: 4 } }),
      scale * 72,
    )
  } finally {
    factory.destroy(drawing)
  }
}

async function extractPage(
  pdf: PdfDocument,
  pageNumber: number,
  options: { ocr: OcrPool; limits: ExtractionLimits; signal: AbortSignal },
): Promise<PageOutcome> {
  const page = await pdf.getPage(pageNumber)
  try {
    const layer = await textLayer(page)
    if (countLettersAndDigits(layer) >= MIN_TEXT_LAYER_CHARS) {
      return { text: layer, source: 'layer' }
    }

    const images = await paintedImages(page)
    if (images.length === 0) {
      return { text: layer, source: layer.trim() ? 'layer' : 'empty' }
    }
    options.signal.throwIfAborted()
    const image = await renderForOcr(page, images, options.limits.maxPixels)
    const ocr = await options.ocr.recognize(image, options.signal)
    return { text: ocr.text, source: 'ocr' }
  } finally {
    page.cleanup()
  }
}

function sourceOf(outcomes: PageOutcome[]): TextSource {
  const layer = outcomes.some((outcome) => outcome.source === 'layer')
  const ocr = outcomes.some((outcome) => outcome.source === 'ocr')
  if (layer && ocr) return 'mixed'
  if (ocr) return 'ocr'
  return layer ? 'pdf-text-layer' : 'none'
}

function unreadableNote(outcomes: PageOutcome[]): string | undefined {
  const broken = outcomes.flatMap((outcome, index) => (outcome.error ? [index + 1] : []))
  if (broken.length === 0) return undefined
  const first = outcomes.find((outcome) => outcome.error)?.error
  const listed =
    broken.length > 10 ? `${broken.slice(0, 10).join(', ')}…` : broken.join(', ')
  return `page${broken.length > 1 ? 's' : ''} ${listed} could not be read (${first})`
}

async function openPdf(bytes: Buffer, limits: ExtractionLimits): Promise<PdfDocument> {
  return getDocumentProxy(new Uint8Array(bytes), {
    CanvasFactory: await loadCanvasFactory(),
    verbosity: 0,
    isEvalSupported: false,
    useSystemFonts: false,
    // Images larger than the pixel limit are not decoded when a page is rendered.
    maxImageSize: limits.maxPixels,
  })
}

/**
 * Text of a PDF: the text layer of each page, and OCR for pages that have none but
 * paint an image. Pages past the page limit are counted, not read.
 */
export async function extractPdf(
  bytes: Buffer,
  options: { ocr: OcrPool; limits: ExtractionLimits; signal: AbortSignal },
): Promise<ExtractionResult> {
  let pdf: PdfDocument
  try {
    pdf = await openPdf(bytes, options.limits)
  } catch (error) {
    if ((error as { name?: string })?.name === 'PasswordException') {
      return skipped(
        'the PDF is encrypted with a password, so its text cannot be read',
        null,
      )
    }
    return failed(`the PDF cannot be read: ${describe(error)}`, null)
  }

  try {
    const total = pdf.numPages
    const count = Math.min(total, options.limits.maxPages)
    const numbers = Array.from({ length: count }, (_, index) => index + 1)

    const outcomes = await withConcurrency(
      numbers,
      options.ocr.size,
      options.signal,
      async (pageNumber): Promise<PageOutcome> => {
        try {
          return await extractPage(pdf, pageNumber, options)
        } catch (error) {
          // The engine failing or the job being stopped is not the page's fault.
          if (error instanceof OcrError || options.signal.aborted) throw error
          return { text: '', source: 'empty', error: describe(error) }
        }
      },
    )

    const readable = outcomes.filter((outcome) => !outcome.error)
    if (count > 0 && readable.length === 0) {
      return failed(`no page of the PDF could be read (${outcomes[0]?.error})`, total)
    }
    const notes = [pageCapNote(count, total), unreadableNote(outcomes)].filter(Boolean)
    return {
      status: 'done',
      reason: notes.length > 0 ? notes.join('; ') : undefined,
      text: joinPages(outcomes.map((outcome) => outcome.text)),
      pages: total,
      source: sourceOf(outcomes),
    }
  } finally {
    await pdf.destroy().catch(() => {})
  }
}

import sharp, { type Sharp } from 'sharp'
import type { OcrPool } from './ocr.ts'
import type { ExtractionLimits, ExtractionResult } from './result.ts'
import { failed, joinPages, pageCapNote, skipped, withConcurrency } from './result.ts'

/**
 * The largest image handed to tesseract: a letter page at 400 dpi. Larger images are
 * scaled down first, since OCR time and its WebAssembly memory grow with the pixels.
 */
export const OCR_MAX_PIXELS = 16_000_000
// Tesseract's own fallback when an image carries no usable resolution.
const DEFAULT_DENSITY = 70

/** Converts decoded pixels into what tesseract reads best: a grayscale PNG on white. */
export async function toOcrImage(pipeline: Sharp, density: number): Promise<Buffer> {
  const { width = 0, height = 0 } = await pipeline.metadata()
  const shrink = Math.min(1, Math.sqrt(OCR_MAX_PIXELS / Math.max(1, width * height)))
  if (shrink < 1) {
    pipeline.resize(
      Math.max(1, Math.floor(width * shrink)),
      Math.max(1, Math.floor(height * shrink)),
    )
  }
  return pipeline
    .flatten({ background: '#ffffff' })
    .grayscale()
    .withDensity(Math.round(Math.min(1200, Math.max(DEFAULT_DENSITY, density * shrink))))
    .png({ compressionLevel: 1 })
    .toBuffer()
}

class ImageDecodeError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ImageDecodeError'
  }
}

type PageSize = { width: number; height: number; density?: number }

async function pageSizes(bytes: Buffer, pages: number): Promise<PageSize[]> {
  const sizes: PageSize[] = []
  for (let page = 0; page < pages; page++) {
    // metadata() reads headers only: nothing is decoded yet, so sharp's own pixel
    // limit stays off here and the configured one is applied below with a clear reason.
    const meta = await sharp(bytes, { page, limitInputPixels: false }).metadata()
    sizes.push({
      width: meta.width ?? 0,
      height: meta.height ?? 0,
      density: meta.density,
    })
  }
  return sizes
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message.split('\n')[0]?.trim() || 'unknown error'
}

/**
 * OCR of a PNG, JPEG, WebP or TIFF image; every page of a multi-page TIFF. Each page's
 * size is checked against the pixel limit from its header, before anything is decoded.
 */
export async function extractImage(
  bytes: Buffer,
  mediaType: string,
  options: { ocr: OcrPool; limits: ExtractionLimits; signal: AbortSignal },
): Promise<ExtractionResult> {
  const { ocr, limits, signal } = options

  let total: number
  let sizes: PageSize[]
  try {
    const meta = await sharp(bytes, { limitInputPixels: false }).metadata()
    // Only TIFF pages are document pages; the frames of an animated WebP are not.
    total = mediaType === 'image/tiff' ? Math.max(1, meta.pages ?? 1) : 1
    sizes = await pageSizes(bytes, Math.min(total, limits.maxPages))
  } catch (error) {
    return failed(`the image cannot be read: ${describe(error)}`, null)
  }

  for (const [index, size] of sizes.entries()) {
    const pixels = size.width * size.height
    if (pixels > limits.maxPixels) {
      const where = total > 1 ? `page ${index + 1} is` : 'the image is'
      return skipped(
        `${where} ${size.width}×${size.height} pixels, over the limit of ${limits.maxPixels}`,
        total,
      )
    }
  }

  const texts = await withConcurrency(sizes, ocr.size, signal, async (size, index) => {
    let image: Buffer
    try {
      const pipeline = sharp(bytes, {
        page: index,
        autoOrient: true,
        limitInputPixels: limits.maxPixels,
      })
      image = await toOcrImage(pipeline, size.density ?? DEFAULT_DENSITY)
    } catch (error) {
      throw new ImageDecodeError(
        `page ${index + 1} cannot be decoded: ${describe(error)}`,
      )
    }
    return (await ocr.recognize(image, signal)).text
  }).catch((error: unknown) => {
    if (error instanceof ImageDecodeError) return error
    throw error
  })
  if (texts instanceof ImageDecodeError) return failed(texts.message, total)

  return {
    status: 'done',
    reason: pageCapNote(sizes.length, total),
    text: joinPages(texts),
    pages: total,
    source: 'ocr',
  }
}

import { crc32, deflateSync } from 'node:zlib'
import sharp from 'sharp'
import { afterAll, describe, expect, it } from 'vitest'
import { extractDocument } from '../../../lib/extraction/extract.ts'
import { createOcrPool } from '../../../lib/extraction/ocr.ts'
import { PAGE_SEPARATOR } from '../../../lib/extraction/result.ts'
import { corpusFile, LIMITS, normalise } from './support.ts'

const ocr = createOcrPool({ size: 1 })

afterAll(async () => {
  await ocr.terminate()
})

function chunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data])
  const length = Buffer.alloc(4)
  length.writeUInt32BE(data.length)
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(body))
  return Buffer.concat([length, body, crc])
}

/** A PNG whose header claims the given size, with a few bytes of pixel data: no image. */
function pngHeaderClaiming(width: number, height: number): Buffer {
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header.writeUInt8(8, 8) // bit depth
  header.writeUInt8(2, 9) // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.alloc(16))),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

/** Two pages of different text, as an office scanner would write them. */
async function twoPageTiff(): Promise<Buffer> {
  const pages = await Promise.all(
    ['docs/testocr.png', 'docs/bill.png'].map(async (file) =>
      sharp(await corpusFile(file))
        .resize(960, 480, { fit: 'contain', background: '#ffffff' })
        .flatten({ background: '#ffffff' })
        .png()
        .toBuffer(),
    ),
  )
  return sharp(pages, { join: { animated: true } })
    .tiff({ compression: 'lzw' })
    .toBuffer()
}

describe('pixel limit', () => {
  it('refuses an image from its header alone, before decoding', async () => {
    const bytes = pngHeaderClaiming(100_000, 100_000)

    const result = await extractDocument(bytes, 'image/png', { ocr, limits: LIMITS })

    expect(result.status).toBe('skipped')
    expect(result.reason).toContain('100000×100000 pixels, over the limit of 50000000')
  })

  it('refuses a real image over a lower limit', async () => {
    const bytes = await corpusFile('docs/testocr.png')

    const result = await extractDocument(bytes, 'image/png', {
      ocr,
      limits: { ...LIMITS, maxPixels: 640 * 480 - 1 },
    })

    expect(result).toMatchObject({ status: 'skipped', text: '', pages: 1 })
    expect(result.reason).toContain('640×480')
  })
})

describe('multi-page TIFF', () => {
  it('reads the text of every page, in order', async () => {
    const bytes = await twoPageTiff()

    const result = await extractDocument(bytes, 'image/tiff', { ocr, limits: LIMITS })

    expect(result).toMatchObject({ status: 'done', pages: 2, source: 'ocr' })
    const [first = '', second = ''] = result.text.split(PAGE_SEPARATOR)
    expect(normalise(first)).toContain('quick brown dog')
    expect(normalise(second)).toContain('first chequing')
  })

  it('reads only the pages within the page limit and says so', async () => {
    const bytes = await twoPageTiff()

    const result = await extractDocument(bytes, 'image/tiff', {
      ocr,
      limits: { ...LIMITS, maxPages: 1 },
    })

    expect(result).toMatchObject({ status: 'done', pages: 2 })
    expect(result.reason).toBe('only the first 1 of 2 pages were extracted (page limit)')
    expect(normalise(result.text)).toContain('quick brown dog')
    expect(normalise(result.text)).not.toContain('chequing')
  })
})

describe('page limit of a PDF', () => {
  it('counts every page but reads only the first ones', async () => {
    const bytes = await corpusFile('docs/pdflatex-4-pages.pdf')

    const result = await extractDocument(bytes, 'application/pdf', {
      ocr,
      limits: { ...LIMITS, maxPages: 2 },
    })

    expect(result).toMatchObject({ status: 'done', pages: 4, source: 'pdf-text-layer' })
    expect(result.reason).toBe('only the first 2 of 4 pages were extracted (page limit)')
    expect(result.text.split(PAGE_SEPARATOR)).toHaveLength(2)
  })
})

describe('time limit', () => {
  it('fails a document that takes longer than the limit, and the pool keeps working', async () => {
    // Large enough that its OCR takes seconds.
    const slow = await sharp(await corpusFile('docs/bill.png'))
      .resize({ width: 957 * 4 })
      .png()
      .toBuffer()
    const started = performance.now()

    const result = await extractDocument(slow, 'image/png', {
      ocr,
      limits: { ...LIMITS, timeoutMs: 300 },
    })
    const elapsed = performance.now() - started
    const after = await extractDocument(
      await corpusFile('docs/simple.jpg'),
      'image/jpeg',
      {
        ocr,
        limits: LIMITS,
      },
    )

    expect(result).toMatchObject({ status: 'failed', source: 'none', text: '' })
    expect(result.reason).toBe('extraction took longer than the limit of 300 ms')
    expect(elapsed).toBeLessThan(3_000)
    expect(after.status).toBe('done')
    expect(normalise(after.text)).toContain('tesseract.js')
  })

  it('fails a PDF whose text layer takes longer than the limit', async () => {
    const bytes = await corpusFile('docs/GeoTopo-komprimiert.pdf')

    const result = await extractDocument(bytes, 'application/pdf', {
      ocr,
      limits: { ...LIMITS, timeoutMs: 50 },
    })

    expect(result.status).toBe('failed')
    expect(result.reason).toBe('extraction took longer than the limit of 50 ms')
  })

  it("rejects when the caller's signal aborts, since a retry may succeed", async () => {
    const controller = new AbortController()
    const bytes = await corpusFile('docs/testocr.png')
    controller.abort(new DOMException('shutting down', 'AbortError'))

    const extraction = extractDocument(bytes, 'image/png', {
      ocr,
      limits: LIMITS,
      signal: controller.signal,
    })

    await expect(extraction).rejects.toMatchObject({ name: 'AbortError' })
  })
})

describe('types', () => {
  it('fails a media type it cannot read', async () => {
    const result = await extractDocument(Buffer.from('GIF89a'), 'image/gif', {
      ocr,
      limits: LIMITS,
    })

    expect(result).toMatchObject({ status: 'failed', source: 'none' })
  })
})

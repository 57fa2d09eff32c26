import { afterAll, describe, expect, it } from 'vitest'
import { extractDocument } from '../../../lib/extraction/extract.ts'
import { createOcrPool, type OcrPool } from '../../../lib/extraction/ocr.ts'
import { sniffMediaType } from '../../../lib/extraction/sniff.ts'
import { corpusFile, LIMITS, normalise, readManifest } from './support.ts'

const manifest = await readManifest()

// One pool for the file; the wrapper counts how often OCR is asked for.
const pool = createOcrPool({ size: 1 })
let ocrCalls = 0
const ocr: OcrPool = {
  size: pool.size,
  terminate: pool.terminate,
  recognize(image, signal) {
    ocrCalls++
    return pool.recognize(image, signal)
  },
}

afterAll(async () => {
  await pool.terminate()
})

describe('extraction of each corpus document', () => {
  it.each(manifest.documents.map((entry) => [entry.file, entry] as const))(
    'finds what the manifest says in %s',
    async (_file, entry) => {
      const bytes = await corpusFile(entry.file)
      const callsBefore = ocrCalls

      const mediaType = await sniffMediaType(bytes)
      const result = await extractDocument(bytes, entry.mediaType, {
        ocr,
        limits: LIMITS,
      })

      expect(mediaType).toBe(entry.mediaType)
      if (!entry.expectStatus)
        expect(result).toMatchObject({ status: 'done', reason: undefined })
      expect(result.source).toBe(entry.textSource)
      if (entry.pages !== undefined) expect(result.pages).toBe(entry.pages)
      const text = normalise(result.text)
      for (const phrase of entry.expect) expect(text).toContain(normalise(phrase))
      if (entry.textSource === 'pdf-text-layer') expect(ocrCalls).toBe(callsBefore)
      if (entry.textSource === 'ocr') expect(ocrCalls).toBeGreaterThan(callsBefore)
    },
  )

  it('keeps an encrypted PDF as skipped, with the reason', async () => {
    const entry = manifest.documents.find((doc) =>
      doc.expectStatus?.startsWith('encrypted'),
    )
    const bytes = await corpusFile(entry?.file ?? 'docs/libreoffice-writer-password.pdf')

    const result = await extractDocument(bytes, 'application/pdf', {
      ocr,
      limits: LIMITS,
    })

    expect(result).toMatchObject({ status: 'skipped', text: '', source: 'none' })
    expect(result.reason).toMatch(/encrypted/)
  })

  it('ends done without words where OCR finds no meaningful text', async () => {
    const wordless = manifest.documents.filter(
      (doc) => doc.textSource === 'ocr' && doc.expect.length === 0,
    )
    expect(wordless.length).toBeGreaterThan(0)

    for (const entry of wordless) {
      const bytes = await corpusFile(entry.file)
      const result = await extractDocument(bytes, entry.mediaType, {
        ocr,
        limits: LIMITS,
      })

      expect(result.status).toBe('done')
      expect(result.source).toBe('ocr')
      expect(result.text).not.toMatch(/[\p{L}\p{N}]/u)
    }
  })
})

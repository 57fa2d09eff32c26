import { afterAll, describe, expect, it } from 'vitest'
import { extractDocument } from '../../../lib/extraction/extract.ts'
import { createOcrPool } from '../../../lib/extraction/ocr.ts'
import { sniffMediaType } from '../../../lib/extraction/sniff.ts'
import { corpusFile, LIMITS, normalise, readManifest } from './support.ts'

const manifest = await readManifest()
const badFiles = manifest.badInputs.map((entry) => entry.file)
const ocr = createOcrPool({ size: 1 })

afterAll(async () => {
  await ocr.terminate()
})

describe('bad inputs', () => {
  it.each(badFiles)(
    'refuses %s at sniffing or ends it with a final status',
    async (file) => {
      const bytes = await corpusFile(file)

      const mediaType = await sniffMediaType(bytes)

      if (mediaType === undefined) return
      const result = await extractDocument(bytes, mediaType, { ocr, limits: LIMITS })
      expect(['done', 'failed']).toContain(result.status)
      if (result.status === 'failed') expect(result.reason).toBeTruthy()
    },
  )

  it.each(badFiles)(
    'never throws on %s whatever type it is declared as',
    async (file) => {
      const bytes = await corpusFile(file)

      for (const declared of [
        'application/pdf',
        'image/png',
        'image/tiff',
        'image/jpeg',
      ]) {
        const result = await extractDocument(bytes, declared, { ocr, limits: LIMITS })

        expect(['done', 'failed']).toContain(result.status)
      }
    },
  )

  it('refuses an empty file and random bytes at sniffing', async () => {
    expect(await sniffMediaType(await corpusFile('bad/empty.pdf'))).toBeUndefined()
    expect(await sniffMediaType(await corpusFile('bad/random.bin'))).toBeUndefined()
  })

  it('fails a truncated PDF and a header-only PDF with a reason', async () => {
    for (const file of ['bad/truncated.pdf', 'bad/header-only.pdf']) {
      const bytes = await corpusFile(file)

      const mediaType = await sniffMediaType(bytes)
      const result = await extractDocument(bytes, 'application/pdf', {
        ocr,
        limits: LIMITS,
      })

      expect(mediaType).toBe('application/pdf')
      expect(result).toMatchObject({ status: 'failed', source: 'none', text: '' })
      expect(result.reason).toMatch(/PDF cannot be read/)
    }
  })

  it('reads a PNG named .pdf as the PNG it is', async () => {
    const bytes = await corpusFile('bad/png-disguised-as.pdf')

    const mediaType = await sniffMediaType(bytes)
    const result = await extractDocument(bytes, mediaType as string, {
      ocr,
      limits: LIMITS,
    })

    expect(mediaType).toBe('image/png')
    expect(result.status).toBe('done')
    expect(normalise(result.text)).toContain('quick brown dog')
  })
})

import { describe, expect, it } from 'vitest'
import { ALLOWED_MEDIA_TYPES, sniffMediaType } from '../../../lib/extraction/sniff.ts'
import { corpusFile, readManifest } from './support.ts'

const manifest = await readManifest()

describe('sniffMediaType', () => {
  it.each(manifest.documents.map((entry) => [entry.file, entry.mediaType] as const))(
    'reads %s as %s from its bytes',
    async (file, mediaType) => {
      expect(await sniffMediaType(await corpusFile(file))).toBe(mediaType)
    },
  )

  it('allows exactly PDF, PNG, JPEG, TIFF and WebP', () => {
    expect([...ALLOWED_MEDIA_TYPES].sort()).toEqual([
      'application/pdf',
      'image/jpeg',
      'image/png',
      'image/tiff',
      'image/webp',
    ])
  })

  it('refuses empty input, text and types outside the list', async () => {
    const gif = Buffer.from(
      'R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==',
      'base64',
    )

    expect(await sniffMediaType(Buffer.alloc(0))).toBeUndefined()
    expect(
      await sniffMediaType(Buffer.from('%!PS-Adobe-3.0\nplain text')),
    ).toBeUndefined()
    expect(await sniffMediaType(gif)).toBeUndefined()
  })

  it('ignores the name and reads a PNG called .pdf as a PNG', async () => {
    expect(await sniffMediaType(await corpusFile('bad/png-disguised-as.pdf'))).toBe(
      'image/png',
    )
  })
})

import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { query } from '../../lib/db.ts'
import { startApp, type TestApp } from '../support/app.ts'
import {
  type Account,
  CORPUS_DIR,
  corpusFile,
  registerAndLogin,
  upload,
  waitForFinal,
} from '../support/http.ts'

type ManifestDocument = {
  file: string
  mediaType: string
  pages?: number
  textSource: 'pdf-text-layer' | 'ocr' | 'none'
  expect: string[]
}

const manifest = JSON.parse(
  await readFile(path.join(CORPUS_DIR, 'manifest.json'), 'utf8'),
) as {
  documents: ManifestDocument[]
}

function normalise(text: string): string {
  return text.replace(/\s+/g, ' ').trim().toLowerCase()
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

let app: TestApp
let account: Account

beforeAll(async () => {
  app = await startApp()
  account = await registerAndLogin(app.url)
})

afterAll(async () => {
  await app?.stop()
})

async function usedBytes(): Promise<number> {
  const response = await fetch(`${app.url}/auth/me`, { headers: account.headers })
  const me = (await response.json()) as { quota: { usedBytes: number } }
  return me.quota.usedBytes
}

describe('every document of the corpus, uploaded through the gateway', () => {
  it.each(manifest.documents.map((entry) => [entry.file, entry] as const))(
    'extracts %s as the manifest says',
    async (_file, entry) => {
      const input = await corpusFile(entry.file)

      const created = await upload(app.url, account, input)
      expect(created.status).toBe(201)
      const document = (await created.json()) as { id: string; status: string }
      expect(document.status).toBe('pending')
      const final = await waitForFinal(app.url, account, document.id, 150_000)

      expect(final.mediaType).toBe(entry.mediaType)
      expect(final.sha256).toBe(sha256(input.bytes))
      expect(final.sizeBytes).toBe(input.bytes.length)
      if (entry.pages !== undefined) expect(final.pages).toBe(entry.pages)
      if (entry.textSource === 'none') {
        expect(final.status).toBe('skipped')
        expect(final.statusReason).toMatch(/encrypt|password/i)
      } else {
        expect(final.status).toBe('done')
        expect(
          final.textSource === entry.textSource || final.textSource === 'mixed',
        ).toBe(true)
      }

      const textResponse = await fetch(`${app.url}/documents/${document.id}/text`, {
        headers: account.headers,
      })
      expect(textResponse.status).toBe(200)
      const { text } = (await textResponse.json()) as { text: string }
      for (const phrase of entry.expect)
        expect(normalise(text)).toContain(normalise(phrase))
    },
  )
})

describe('bad files', () => {
  it('refuses an empty file with a 4xx and charges nothing', async () => {
    const before = await usedBytes()

    const response = await upload(app.url, account, await corpusFile('bad/empty.pdf'))

    expect(response.status).toBe(400)
    expect(response.headers.get('content-type')).toBe('application/problem+json')
    expect(((await response.json()) as { code: string }).code).toBe('empty_file')
    expect(await usedBytes()).toBe(before)
  })

  it('refuses random bytes with 415 whatever type they claim, storing nothing', async () => {
    const before = await usedBytes()
    const input = { ...(await corpusFile('bad/random.bin')), type: 'application/pdf' }

    const response = await upload(app.url, account, input)

    expect(response.status).toBe(415)
    expect(await usedBytes()).toBe(before)
    const { rows } = await query<{ count: number }>(
      `SELECT count(*)::int AS count FROM documents d JOIN users u ON u.id = d.owner_id
       WHERE u.email = $1 AND d.filename = 'random.bin'`,
      [account.email],
    )
    expect(rows[0]?.count).toBe(0)
  })

  it('stores and serves a PNG named .pdf as the PNG it is', async () => {
    const input = {
      ...(await corpusFile('bad/png-disguised-as.pdf')),
      type: 'application/pdf',
    }

    const created = await upload(app.url, account, input)
    expect(created.status).toBe(201)
    const document = (await created.json()) as { id: string; mediaType: string }
    const content = await fetch(`${app.url}/documents/${document.id}/content`, {
      headers: account.headers,
    })

    expect(document.mediaType).toBe('image/png')
    expect(content.headers.get('content-type')).toBe('image/png')
    expect(sha256(new Uint8Array(await content.arrayBuffer()))).toBe(sha256(input.bytes))
  })

  it.each([['bad/truncated.pdf'], ['bad/header-only.pdf']])(
    'accepts %s, serves it byte for byte, and fails its extraction with a reason',
    async (file) => {
      const input = await corpusFile(file)

      const created = await upload(app.url, account, input)
      expect(created.status).toBe(201)
      const { id } = (await created.json()) as { id: string }
      const final = await waitForFinal(app.url, account, id, 60_000)
      const content = await fetch(`${app.url}/documents/${id}/content`, {
        headers: account.headers,
      })

      expect(final.status).toBe('failed')
      expect(final.statusReason).toBeTruthy()
      expect(sha256(new Uint8Array(await content.arrayBuffer()))).toBe(
        sha256(input.bytes),
      )
    },
  )

  it('keeps the worker running after every bad file', async () => {
    const good = await upload(
      app.url,
      account,
      await corpusFile('docs/minimal-document.pdf'),
    )
    const { id } = (await good.json()) as { id: string }

    const final = await waitForFinal(app.url, account, id, 60_000)

    expect(final.status).toBe('done')
  })
})

import { createHash } from 'node:crypto'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { getConfig } from '../../lib/config.ts'
import { query } from '../../lib/db.ts'
import { getS3 } from '../../lib/storage.ts'
import { startApp, type TestApp } from '../support/app.ts'
import {
  type Account,
  corpusFile,
  registerAndLogin,
  upload,
  waitForFinal,
} from '../support/http.ts'

type DocumentJson = { id: string; status: string; [field: string]: unknown }

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

let app: TestApp

beforeAll(async () => {
  app = await startApp()
})

afterAll(async () => {
  await app?.stop()
})

async function uploadCorpus(
  account: Account,
  file: string,
  title?: string,
): Promise<DocumentJson> {
  const response = await upload(app.url, account, { ...(await corpusFile(file)), title })
  expect(response.status).toBe(201)
  return (await response.json()) as DocumentJson
}

async function me(account: Account) {
  const response = await fetch(`${app.url}/auth/me`, { headers: account.headers })
  return (await response.json()) as { quota: { usedBytes: number; totalBytes: number } }
}

async function objectCount(userId: string): Promise<number> {
  const listed = await getS3().send(
    new ListObjectsV2Command({
      Bucket: getConfig().S3_BUCKET,
      Prefix: `documents/${userId}/`,
    }),
  )
  return listed.KeyCount ?? 0
}

const ANY_ID = '6f1c1a52-8f7e-4a55-9d59-0b7a0f0c2b11'

/** A cursor as a client could forge one: any JSON, encoded as the service encodes. */
function encodedCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

function cursorAt(createdAt: string): string {
  return encodedCursor([createdAt, ANY_ID])
}

async function userId(account: Account): Promise<string> {
  const response = await fetch(`${app.url}/auth/me`, { headers: account.headers })
  return ((await response.json()) as { id: string }).id
}

describe('a document from upload to delete', () => {
  it('walks the README path: upload, extract, read, download, delete', async () => {
    const account = await registerAndLogin(app.url)
    const input = await corpusFile('docs/testocr.png')

    const created = await upload(app.url, account, { ...input, title: 'Scan' })
    const document = (await created.json()) as DocumentJson
    const final = await waitForFinal(app.url, account, document.id, 90_000)
    const text = await fetch(`${app.url}/documents/${document.id}/text`, {
      headers: { ...account.headers, accept: 'text/plain' },
    })
    const content = await fetch(`${app.url}/documents/${document.id}/content`, {
      headers: account.headers,
    })
    const bytes = new Uint8Array(await content.arrayBuffer())
    const removed = await fetch(`${app.url}/documents/${document.id}`, {
      method: 'DELETE',
      headers: account.headers,
    })
    const again = await fetch(`${app.url}/documents/${document.id}`, {
      method: 'DELETE',
      headers: account.headers,
    })

    expect(created.status).toBe(201)
    expect(created.headers.get('location')).toBe(`/documents/${document.id}`)
    expect(document).toMatchObject({
      status: 'pending',
      title: 'Scan',
      filename: 'testocr.png',
    })
    expect(final.status).toBe('done')
    expect(text.headers.get('content-type')).toBe('text/plain; charset=utf-8')
    expect((await text.text()).toLowerCase()).toContain('quick brown dog')
    expect(content.headers.get('content-type')).toBe('image/png')
    expect(content.headers.get('x-content-type-options')).toBe('nosniff')
    expect(content.headers.get('content-disposition')).toBe(
      `attachment; filename="testocr.png"; filename*=UTF-8''testocr.png`,
    )
    expect(sha256(bytes)).toBe(sha256(input.bytes))
    expect(removed.status).toBe(204)
    expect(again.status).toBe(404)
    expect((await me(account)).quota.usedBytes).toBe(0)
    expect(await objectCount(await userId(account))).toBe(0)
  })

  it('accepts a raw body with a filename in the query string', async () => {
    const account = await registerAndLogin(app.url)
    const input = await corpusFile('docs/minimal-document.pdf')

    const response = await fetch(
      `${app.url}/documents?filename=${encodeURIComponent('Bericht Ü.pdf')}`,
      {
        method: 'POST',
        headers: { ...account.headers, 'content-type': 'application/pdf' },
        body: input.bytes,
      },
    )
    const document = (await response.json()) as DocumentJson
    const content = await fetch(`${app.url}/documents/${document.id}/content`, {
      headers: account.headers,
    })

    expect(response.status).toBe(201)
    expect(document).toMatchObject({ filename: 'Bericht Ü.pdf', title: 'Bericht Ü.pdf' })
    expect(content.headers.get('content-disposition')).toBe(
      `attachment; filename="Bericht _.pdf"; filename*=UTF-8''Bericht%20%C3%9C.pdf`,
    )
  })

  it('keeps only the last part of a filename, without control characters', async () => {
    const account = await registerAndLogin(app.url)
    const input = await corpusFile('docs/minimal-document.pdf')

    const form = await upload(app.url, account, {
      ...input,
      filename: '../../etc/passwd.pdf',
    })
    const raw = await fetch(`${app.url}/documents?filename=..%2Fbell%07%1Bname.pdf`, {
      method: 'POST',
      headers: { ...account.headers, 'content-type': 'application/pdf' },
      body: input.bytes,
    })

    expect(form.status).toBe(201)
    expect(((await form.json()) as DocumentJson).filename).toBe('passwd.pdf')
    expect(raw.status).toBe(201)
    expect(((await raw.json()) as DocumentJson).filename).toBe('bellname.pdf')
  })
})

describe('listing', () => {
  it('pages newest first with a cursor and filters by status', async () => {
    const account = await registerAndLogin(app.url)
    const ids: string[] = []
    for (let index = 0; index < 5; index++) {
      ids.push(
        (await uploadCorpus(account, 'docs/minimal-document.pdf', `doc ${index}`)).id,
      )
    }

    const first = await fetch(`${app.url}/documents?limit=2`, {
      headers: account.headers,
    })
    const firstPage = (await first.json()) as {
      items: DocumentJson[]
      nextCursor: string
    }
    const seen = [...firstPage.items.map((item) => item.id)]
    let cursor: string | null = firstPage.nextCursor
    while (cursor) {
      const next = await fetch(`${app.url}/documents?limit=2&cursor=${cursor}`, {
        headers: account.headers,
      })
      const page = (await next.json()) as {
        items: DocumentJson[]
        nextCursor: string | null
      }
      seen.push(...page.items.map((item) => item.id))
      cursor = page.nextCursor
    }
    for (const id of ids) await waitForFinal(app.url, account, id)
    const done = await fetch(`${app.url}/documents?status=done&limit=100`, {
      headers: account.headers,
    })
    const pending = await fetch(`${app.url}/documents?status=pending`, {
      headers: account.headers,
    })

    expect(first.status).toBe(200)
    expect(firstPage.items).toHaveLength(2)
    expect(seen).toEqual([...ids].reverse())
    expect(((await done.json()) as { items: unknown[] }).items).toHaveLength(5)
    expect(((await pending.json()) as { items: unknown[] }).items).toHaveLength(0)
  })

  it('answers concurrent listings of several accounts each with its own page', async () => {
    const ada = await registerAndLogin(app.url)
    const bob = await registerAndLogin(app.url)
    const adaIds: string[] = []
    for (let index = 0; index < 3; index++)
      adaIds.push((await uploadCorpus(ada, 'docs/minimal-document.pdf')).id)
    const bobId = (await uploadCorpus(bob, 'docs/minimal-document.pdf')).id
    const firstOfAda = (await (
      await fetch(`${app.url}/documents?limit=1`, { headers: ada.headers })
    ).json()) as { nextCursor: string }
    const asks = [
      [ada, 'limit=2'],
      [bob, 'limit=5'],
      [ada, `limit=5&cursor=${firstOfAda.nextCursor}`],
      [bob, 'status=failed'],
    ] as const

    // Sent at once, the four pages are read in the same batches.
    const pages = await Promise.all(
      asks.map(async ([account, queryString]) => {
        const response = await fetch(`${app.url}/documents?${queryString}`, {
          headers: account.headers,
        })
        const page = (await response.json()) as {
          items: DocumentJson[]
          nextCursor: string | null
        }
        return { ids: page.items.map((item) => item.id), more: page.nextCursor !== null }
      }),
    )

    const newestFirst = [...adaIds].reverse()
    expect(pages).toEqual([
      { ids: newestFirst.slice(0, 2), more: true },
      { ids: [bobId], more: false },
      { ids: newestFirst.slice(1), more: false },
      { ids: [], more: false },
    ])
  })

  it('answers an impossible cursor with 400 and the listings beside it with 200', async () => {
    const accounts = await Promise.all(
      Array.from({ length: 4 }, () => registerAndLogin(app.url)),
    )
    const impossible = cursorAt('2026-02-30 00:00:00+00')

    // Sent at once: the pages of one turn are read by one statement.
    const statuses = await Promise.all(
      accounts.map(async (account, index) => {
        const cursor = index === 0 ? `&cursor=${impossible}` : ''
        const response = await fetch(`${app.url}/documents?limit=2${cursor}`, {
          headers: account.headers,
        })
        return response.status
      }),
    )

    expect(statuses).toEqual([400, 200, 200, 200])
  })

  it.each([
    ['limit=0', 422],
    ['limit=101', 422],
    ['limit=abc', 422],
    ['status=lost', 422],
    ['cursor=not-a-cursor', 400],
    [`cursor=${Buffer.from('["x","y"]').toString('base64url')}`, 400],
    [`cursor=${cursorAt('2026-02-30 00:00:00+00')}`, 400],
    [`cursor=${cursorAt('0000-01-01 00:00:00+00')}`, 400],
    [`cursor=${cursorAt('2026-01-01 24:00:01+00')}`, 400],
    [`cursor=${encodedCursor(['2026-01-01 00:00:00+00', [ANY_ID]])}`, 400],
    [`cursor=${encodedCursor(['2026-01-01 00:00:00+00', ANY_ID, 'extra'])}`, 400],
    [`cursor=${encodedCursor({ createdAt: '2026-01-01 00:00:00+00', id: ANY_ID })}`, 400],
  ])('answers %s with %i', async (queryString, status) => {
    const account = await registerAndLogin(app.url)

    const response = await fetch(`${app.url}/documents?${queryString}`, {
      headers: account.headers,
    })

    expect(response.status).toBe(status)
    expect(response.headers.get('content-type')).toBe('application/problem+json')
  })
})

describe('isolation between accounts', () => {
  it("answers another user's document exactly like a missing one", async () => {
    const owner = await registerAndLogin(app.url)
    const stranger = await registerAndLogin(app.url)
    const document = await uploadCorpus(owner, 'docs/minimal-document.pdf')
    const missing = '00000000-0000-4000-8000-000000000000'

    for (const suffix of ['', '/text', '/content']) {
      const foreign = await fetch(`${app.url}/documents/${document.id}${suffix}`, {
        headers: stranger.headers,
      })
      const absent = await fetch(`${app.url}/documents/${missing}${suffix}`, {
        headers: stranger.headers,
      })
      const foreignBody = (await foreign.json()) as Record<string, unknown>
      const absentBody = (await absent.json()) as Record<string, unknown>

      expect(foreign.status).toBe(404)
      expect(absent.status).toBe(404)
      expect({ ...foreignBody, correlationId: 'x' }).toEqual({
        ...absentBody,
        correlationId: 'x',
      })
    }
    const deleted = await fetch(`${app.url}/documents/${document.id}`, {
      method: 'DELETE',
      headers: stranger.headers,
    })
    const list = await fetch(`${app.url}/documents`, { headers: stranger.headers })

    expect(deleted.status).toBe(404)
    expect(((await list.json()) as { items: unknown[] }).items).toHaveLength(0)
    expect(
      (await fetch(`${app.url}/documents/${document.id}`, { headers: owner.headers }))
        .status,
    ).toBe(200)
  })

  it('answers a malformed id with 404', async () => {
    const account = await registerAndLogin(app.url)

    const response = await fetch(`${app.url}/documents/not-a-uuid`, {
      headers: account.headers,
    })

    expect(response.status).toBe(404)
  })
})

describe('quota', () => {
  it('never goes over quota under concurrent uploads', async () => {
    const account = await registerAndLogin(app.url)
    const input = await corpusFile('docs/minimal-document.pdf')
    const id = await userId(account)
    await query('UPDATE users SET quota_bytes = $2 WHERE id = $1', [
      id,
      input.bytes.length * 3 + 10,
    ])

    const responses = await Promise.all(
      Array.from({ length: 12 }, () => upload(app.url, account, input)),
    )
    const statuses = responses.map((response) => response.status)
    const refused = responses.filter((response) => response.status === 413)
    const codes = await Promise.all(
      refused.map(async (response) => ((await response.json()) as { code: string }).code),
    )

    expect(statuses.filter((status) => status === 201)).toHaveLength(3)
    expect(refused).toHaveLength(9)
    expect(new Set(codes)).toEqual(new Set(['quota_exceeded']))
    expect((await me(account)).quota.usedBytes).toBe(input.bytes.length * 3)
    expect(await objectCount(id)).toBe(3)
  })

  it('refuses a file over the upload limit with 413 before storing it', async () => {
    const account = await registerAndLogin(app.url)
    const big = Buffer.alloc(getConfig().UPLOAD_MAX_BYTES + 1, 0x20)
    big.write('%PDF-1.4\n', 0)

    const response = await upload(app.url, account, { bytes: big, filename: 'big.pdf' })

    expect(response.status).toBe(413)
    expect(((await response.json()) as { code: string }).code).toBe('file_too_large')
    expect(await objectCount(await userId(account))).toBe(0)
  })
})

describe('bad requests', () => {
  it('refuses an upload without a token', async () => {
    const response = await fetch(`${app.url}/documents`, { method: 'POST', body: 'x' })

    expect(response.status).toBe(401)
    expect(response.headers.get('content-type')).toBe('application/problem+json')
  })

  it('refuses a form without a file part with 422', async () => {
    const account = await registerAndLogin(app.url)
    const form = new FormData()
    form.append('title', 'no file')

    const response = await fetch(`${app.url}/documents`, {
      method: 'POST',
      headers: account.headers,
      body: form,
    })

    expect(response.status).toBe(422)
  })

  it('refuses a broken multipart body with 400', async () => {
    const account = await registerAndLogin(app.url)

    const response = await fetch(`${app.url}/documents`, {
      method: 'POST',
      headers: { ...account.headers, 'content-type': 'multipart/form-data' },
      body: '--x\r\nnonsense',
    })

    expect(response.status).toBe(400)
  })

  it('answers a multipart body cut off in the middle of the file with 400 and keeps serving', async () => {
    const account = await registerAndLogin(app.url)
    const body =
      '--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG'

    const cut = await fetch(`${app.url}/documents`, {
      method: 'POST',
      headers: { ...account.headers, 'content-type': 'multipart/form-data; boundary=B' },
      body,
    })
    const after = await fetch(`${app.url}/health`)

    expect(cut.status).toBe(400)
    expect(((await cut.json()) as { code: string }).code).toBe('malformed_multipart')
    expect(after.status).toBe(200)
  })

  it('refuses a second file part with 422 instead of dropping it silently', async () => {
    const account = await registerAndLogin(app.url)
    const input = await corpusFile('docs/minimal-document.pdf')
    const form = new FormData()
    form.append('file', new Blob([input.bytes]), 'one.pdf')
    form.append('file', new Blob([input.bytes]), 'two.pdf')

    const response = await fetch(`${app.url}/documents`, {
      method: 'POST',
      headers: account.headers,
      body: form,
    })

    expect(response.status).toBe(422)
  })

  it('keeps a UTF-8 filename and cleans and bounds the title', async () => {
    const account = await registerAndLogin(app.url)
    const input = await corpusFile('docs/minimal-document.pdf')

    const named = await upload(app.url, account, {
      ...input,
      filename: 'résumé 日本語 😀.pdf',
      title: ' Q3\u001b[2J report\u202e ',
    })
    const tooLong = await upload(app.url, account, { ...input, title: 'x'.repeat(501) })

    expect(named.status).toBe(201)
    expect(await named.json()).toMatchObject({
      filename: 'résumé 日本語 😀.pdf',
      title: 'Q3[2J report',
    })
    expect(tooLong.status).toBe(422)
  })

  it('accepts a file of exactly the upload limit', async () => {
    const account = await registerAndLogin(app.url)
    const limit = getConfig().UPLOAD_MAX_BYTES
    const exact = Buffer.alloc(limit, 0x20)
    exact.write('%PDF-1.4\n', 0)

    const response = await upload(app.url, account, {
      bytes: exact,
      filename: 'exact.pdf',
    })

    expect(response.status).toBe(201)
    expect(((await response.json()) as { sizeBytes: number }).sizeBytes).toBe(limit)
  })

  it('accepts the bearer scheme in any letter case', async () => {
    const account = await registerAndLogin(app.url)

    const response = await fetch(`${app.url}/documents`, {
      headers: { authorization: `bearer ${account.token}` },
    })

    expect(response.status).toBe(200)
  })

  it('refuses NUL in a filename query parameter with a 4xx', async () => {
    const account = await registerAndLogin(app.url)
    const input = await corpusFile('docs/minimal-document.pdf')

    const response = await fetch(`${app.url}/documents?filename=a%00b.pdf`, {
      method: 'POST',
      headers: { ...account.headers, 'content-type': 'application/pdf' },
      body: input.bytes,
    })

    expect(response.status).toBe(422)
  })

  it('answers text of a document still being extracted with 409 and Retry-After', async () => {
    const account = await registerAndLogin(app.url)
    // A row with no job behind it stays pending, so no worker can race this test.
    const { rows } = await query<{ id: string }>(
      `INSERT INTO documents (owner_id, title, filename, media_type, size_bytes, sha256, object_key)
       VALUES ($1, 'waiting', 'waiting.pdf', 'application/pdf', 1, 'x', gen_random_uuid()::text)
       RETURNING id`,
      [await userId(account)],
    )

    const response = await fetch(`${app.url}/documents/${rows[0]?.id}/text`, {
      headers: account.headers,
    })

    expect(response.status).toBe(409)
    expect(response.headers.get('retry-after')).toBe('2')
    expect(((await response.json()) as { code: string }).code).toBe(
      'extraction_in_progress',
    )
  })
})

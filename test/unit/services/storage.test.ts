import { createHash, randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { deleteObject, getObject, putObject, resetStorage } from '../../../lib/storage.ts'

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

describe('lib/storage.ts against the embedded S3 server', () => {
  afterAll(() => resetStorage())

  it('returns a Buffer byte for byte as it was put, with no aws-chunked framing', async () => {
    const every = Buffer.from(Array.from({ length: 256 }, (_, value) => value))
    const body = Buffer.concat([every, randomBytes(1024 * 1024 + 17)])
    const key = `test/round-trip/${randomBytes(8).toString('hex')}`

    await putObject(key, body, 'application/octet-stream')
    const stored = await getObject(key)

    expect(stored.length).toBe(body.length)
    expect(sha256(stored)).toBe(sha256(body))
    await deleteObject(key)
  })

  it('refuses to read an object that was deleted', async () => {
    const key = `test/deleted/${randomBytes(8).toString('hex')}`
    await putObject(key, Buffer.from('short-lived'), 'text/plain')

    await deleteObject(key)

    await expect(getObject(key)).rejects.toMatchObject({ name: 'NoSuchKey' })
  })
})

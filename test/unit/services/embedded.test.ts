import { access, chmod, mkdtemp, rm, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEmbeddedPostgres, startEmbeddedS3 } from '../../../local/embedded.ts'

let root: string

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'docservice-embedded-'))
  await chmod(root, 0o755)
})

afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

async function queryOnce(url: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 })
  await client.connect()
  try {
    return await client.query(text)
  } finally {
    await client.end()
  }
}

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  )

describe('startEmbeddedPostgres', () => {
  it('keeps its data across a stop and a start on the same directory', async () => {
    const dataDir = path.join(root, 'kept')
    const first = await startEmbeddedPostgres({ dataDir, ephemeral: true })
    await queryOnce(
      first.url,
      "CREATE TABLE kept (value text); INSERT INTO kept VALUES ('x')",
    )
    await first.stop()

    const second = await startEmbeddedPostgres({ dataDir, ephemeral: true })
    const result = await queryOnce(second.url, 'SELECT value FROM kept')
    await second.stop()

    expect(result.rows).toEqual([{ value: 'x' }])
  })

  it('ends the server process on stop', async () => {
    const dataDir = path.join(root, 'stopped')
    const server = await startEmbeddedPostgres({ dataDir, ephemeral: true })
    expect(await exists(path.join(dataDir, 'postmaster.pid'))).toBe(true)

    await server.stop()

    // PostgreSQL removes its lock file as the last step of a clean shutdown.
    expect(await exists(path.join(dataDir, 'postmaster.pid'))).toBe(false)
    await expect(queryOnce(server.url, 'SELECT 1')).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    })
  })

  it('refuses a second server on a data directory in use', async () => {
    const dataDir = path.join(root, 'busy')
    const server = await startEmbeddedPostgres({ dataDir, ephemeral: true })

    const second = startEmbeddedPostgres({ dataDir, ephemeral: true })

    await expect(second).rejects.toThrow(/in use by process \d+/)
    await server.stop()
  })
})

describe('startEmbeddedS3', () => {
  it('stops listening on stop', async () => {
    const s3 = await startEmbeddedS3({ dataDir: path.join(root, 's3'), bucket: 'probe' })
    expect((await fetch(`${s3.url}/probe`)).status).toBe(200)

    await s3.stop()

    await expect(fetch(`${s3.url}/probe`)).rejects.toThrow()
  })

  it('keeps its directory closed to other users of the machine', async () => {
    const dataDir = path.join(root, 's3-private')
    const s3 = await startEmbeddedS3({ dataDir, bucket: 'private' })

    const { mode } = await stat(dataDir)
    await s3.stop()

    expect(mode & 0o077).toBe(0)
  })
})

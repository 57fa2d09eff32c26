import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import {
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
} from '@aws-sdk/client-s3'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { getS3, resetStorage } from '../../lib/storage.ts'
import {
  type EmbeddedService,
  findFreePort,
  startEmbeddedPostgres,
  startEmbeddedS3,
} from '../../local/embedded.ts'
import { startApp, type TestApp } from '../support/app.ts'
import {
  type Account,
  CORPUS_DIR,
  postJson,
  registerAndLogin,
  upload,
  waitForFinal,
} from '../support/http.ts'
import { leaveStores, useStores } from '../support/stores.ts'

const REPO = fileURLToPath(new URL('../../', import.meta.url))
const BUCKET = 'backup-drill'
const DATABASE = 'drill'
const FILES = [
  'docs/testocr.png',
  'docs/simple.jpg',
  'docs/minimal-document.pdf',
  'docs/scanned-testocr.pdf',
  'docs/simple.webp',
]
const run = promisify(execFile)
const savedEnv = { ...process.env }

// The drill wipes both stores, so it runs on a PostgreSQL and S3 server of its own.
let root: string
let s3Port: number
let postgres: EmbeddedService
let s3: EmbeddedService
let backupDir: string

type Snapshot = {
  users: unknown[]
  documents: unknown[]
  migrations: unknown[]
  objects: Record<string, string>
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function adminUrl(): string {
  const url = new URL(postgres.url)
  url.pathname = '/postgres'
  return url.toString()
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

async function listKeys(): Promise<string[]> {
  const page = await getS3().send(new ListObjectsV2Command({ Bucket: BUCKET }))
  return (page.Contents ?? []).map((item) => item.Key as string).sort()
}

async function objectHashes(): Promise<Record<string, string>> {
  const hashes: Record<string, string> = {}
  for (const key of await listKeys()) {
    const result = await getS3().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))
    hashes[key] = sha256(
      await (
        result.Body as { transformToByteArray(): Promise<Uint8Array> }
      ).transformToByteArray(),
    )
  }
  return hashes
}

/** Every row that matters, in a stable order, and every object's sha256. */
async function snapshot(): Promise<Snapshot> {
  return withClient(postgres.url, async (client) => ({
    users: (await client.query('SELECT * FROM users ORDER BY id')).rows,
    documents: (await client.query('SELECT * FROM documents ORDER BY id')).rows,
    migrations: (
      await client.query('SELECT version, applied_at FROM schema_migrations ORDER BY 1')
    ).rows,
    objects: await objectHashes(),
  }))
}

/** npm run backup / restore as the operator runs them, against DATABASE_URL and S3. */
async function cli(
  args: string[],
  env: Record<string, string> = { DATABASE_URL: postgres.url, S3_ENDPOINT: s3.url },
): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['local/backup.ts', ...args], {
      cwd: REPO,
      env: { ...process.env, S3_BUCKET: BUCKET, ...env },
    })
    return { code: 0, output: stdout + stderr }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? 1, output: `${failed.stdout}${failed.stderr}` }
  }
}

async function startS3(bucket: string): Promise<EmbeddedService> {
  return startEmbeddedS3({ dataDir: path.join(root, 's3'), port: s3Port, bucket })
}

async function wipeBothStores(): Promise<void> {
  await withClient(adminUrl(), async (client) => {
    await client.query(`DROP DATABASE ${DATABASE} WITH (FORCE)`)
    await client.query(`CREATE DATABASE ${DATABASE}`)
  })
  await s3.stop()
  await rm(path.join(root, 's3'), { recursive: true, force: true })
  // A fresh server without the service's bucket: the restore must create it.
  s3 = await startS3('unrelated')
  resetStorage()
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'docservice-backup-'))
  await chmod(root, 0o755)
  backupDir = path.join(root, 'backup')
  s3Port = await findFreePort()
  ;[postgres, s3] = await Promise.all([
    startEmbeddedPostgres({
      dataDir: path.join(root, 'postgres'),
      database: DATABASE,
      ephemeral: true,
    }),
    startS3(BUCKET),
  ])
  await useStores({ DATABASE_URL: postgres.url, S3_ENDPOINT: s3.url, S3_BUCKET: BUCKET })
})

afterAll(async () => {
  await leaveStores(savedEnv)
  await Promise.all([s3?.stop(), postgres?.stop()])
  await rm(root, { recursive: true, force: true })
})

describe('the backup and restore drill', () => {
  it('restores every row and every object after both stores are wiped', async () => {
    // Users and documents made through the API, extracted by the worker.
    let app: TestApp = await startApp()
    const accounts: Account[] = []
    const documentIds: string[] = []
    for (let user = 0; user < 2; user++) {
      const account = await registerAndLogin(app.url)
      accounts.push(account)
      for (const file of FILES.slice(user, user + 3)) {
        const bytes = await readFile(path.join(CORPUS_DIR, file))
        const response = await upload(app.url, account, {
          bytes,
          filename: path.basename(file),
          title: `${file} of user ${user}`,
        })
        expect(response.status, await response.clone().text()).toBe(201)
        const { id } = (await response.json()) as { id: string }
        documentIds.push(id)
        await waitForFinal(app.url, account, id)
      }
    }
    await app.stop()
    const before = await snapshot()
    expect(before.users).toHaveLength(2)
    expect(before.documents).toHaveLength(6)
    expect(Object.keys(before.objects)).toHaveLength(6)

    const backedUp = await cli(['backup', '--out', backupDir])
    expect(backedUp.code, backedUp.output).toBe(0)
    expect(backedUp.output).toContain('backup complete')
    const manifest = JSON.parse(
      await readFile(path.join(backupDir, 'manifest.json'), 'utf8'),
    )
    expect(manifest.database).toMatchObject({ rows: { users: 2, documents: 6 } })
    expect(manifest.database.pgDump).toMatch(/PostgreSQL\) 1[89]|PostgreSQL\) [2-9]\d/)
    expect(
      Object.fromEntries(
        (manifest.objects as { key: string; sha256: string }[]).map((o) => [
          o.key,
          o.sha256,
        ]),
      ),
    ).toEqual(before.objects)
    const dump = await readFile(path.join(backupDir, 'database.dump'))
    // pg_dump's custom format starts with its magic bytes.
    expect(dump.subarray(0, 5).toString()).toBe('PGDMP')

    await wipeBothStores()
    const tables = await withClient(postgres.url, (client) =>
      client.query("SELECT to_regclass('documents') AS t"),
    )
    expect(tables.rows[0].t).toBeNull()
    await expect(
      getS3().send(new HeadBucketCommand({ Bucket: BUCKET })),
    ).rejects.toBeTruthy()

    // A damaged copy is refused before anything is written.
    const victim = (manifest.objects as { key: string }[])[0]?.key as string
    const victimFile = path.join(backupDir, 'objects', ...victim.split('/'))
    const original = await readFile(victimFile)
    await writeFile(victimFile, Buffer.concat([original, Buffer.from('x')]))
    const refused = await cli(['restore', backupDir])
    expect(refused.code).toBe(1)
    expect(refused.output).toContain(`object ${victim} does not match its sha256`)
    const stillEmpty = await withClient(postgres.url, (client) =>
      client.query("SELECT to_regclass('documents') AS t"),
    )
    expect(stillEmpty.rows[0].t).toBeNull()
    await writeFile(victimFile, original)

    const restored = await cli(['restore', backupDir])
    expect(restored.code, restored.output).toBe(0)
    expect(restored.output).toContain('restore complete: 6 objects')

    const after = await snapshot()
    expect(after.users).toEqual(before.users)
    expect(after.documents).toEqual(before.documents)
    expect(after.migrations).toEqual(before.migrations)
    expect(after.objects).toEqual(before.objects)
    for (const row of after.documents as { object_key: string; sha256: string }[]) {
      expect(after.objects[row.object_key]).toBe(row.sha256)
    }

    // The service runs on the restored stores: the same accounts read the same bytes.
    app = await startApp({ worker: false })
    try {
      const [account] = accounts as [Account]
      const relogin = await postJson(
        `${app.url}/auth/login`,
        { email: account.email, password: account.password },
        account.headers,
      )
      expect(relogin.status).toBe(200)
      const content = await fetch(`${app.url}/documents/${documentIds[0]}/content`, {
        headers: account.headers,
      })
      expect(content.status).toBe(200)
      expect(sha256(new Uint8Array(await content.arrayBuffer()))).toBe(
        sha256(await readFile(path.join(CORPUS_DIR, FILES[0] as string))),
      )
    } finally {
      await app.stop()
    }
  })

  it('restores onto the embedded default of an empty DATA_DIR, and backs that up again', async () => {
    // A new machine: no DATABASE_URL, no S3_ENDPOINT, no npm start; the tool starts the
    // embedded PostgreSQL and s3rver of DATA_DIR itself.
    const embedded = {
      DATA_DIR: path.join(root, 'new-host'),
      DATABASE_URL: '',
      S3_ENDPOINT: '',
    }
    const original = JSON.parse(
      await readFile(path.join(backupDir, 'manifest.json'), 'utf8'),
    )

    const restored = await cli(['restore', backupDir], embedded)
    const again = await cli(['backup', '--out', path.join(root, 'again')], embedded)

    expect(restored.code, restored.output).toBe(0)
    expect(restored.output).toContain('into the embedded services in')
    expect(again.code, again.output).toBe(0)
    expect(again.output).toContain('backing up the embedded services in')
    const copy = JSON.parse(
      await readFile(path.join(root, 'again', 'manifest.json'), 'utf8'),
    )
    expect(copy.objects).toEqual(original.objects)
    expect(copy.database.rows).toEqual(original.database.rows)
    expect(copy.database.migrations).toEqual(original.database.migrations)
  })

  it("uses a running npm start's services, and refuses to restore into them", async () => {
    const dataDir = path.join(root, 'running')
    await mkdir(dataDir, { recursive: true })
    // What npm start writes; this process stands in for it (its pid is alive).
    await writeFile(
      path.join(dataDir, 'runtime.json'),
      JSON.stringify({
        pid: process.pid,
        DATABASE_URL: postgres.url,
        S3_ENDPOINT: s3.url,
        S3_BUCKET: BUCKET,
      }),
    )
    const running = { DATA_DIR: dataDir, DATABASE_URL: '', S3_ENDPOINT: '' }

    const backedUp = await cli(
      ['backup', '--out', path.join(root, 'running-backup')],
      running,
    )
    const refused = await cli(['restore', backupDir], running)

    expect(backedUp.code, backedUp.output).toBe(0)
    expect(backedUp.output).toContain(
      `backing up the running npm start (process ${process.pid})`,
    )
    expect(refused.code).toBe(1)
    expect(refused.output).toContain('stop it before restoring')
  })
})

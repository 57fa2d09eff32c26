import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  access,
  chmod,
  mkdir,
  readdir,
  readFile,
  stat,
  writeFile,
} from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import pg from 'pg'
import { configSchema, parseEnv } from '../lib/config.ts'
import { createS3Client } from '../lib/storage.ts'
import {
  type EmbeddedService,
  startEmbeddedPostgres,
  startEmbeddedS3,
} from './embedded.ts'
import { dataDirFrom, isAlive, readRuntime, useRunningServices } from './runtime.ts'

const USAGE = `Backs up or restores the service's data: the PostgreSQL database (pg_dump, custom
format) and every object of the bucket, with a manifest of sha256 checksums.

  npm run backup [-- --out <dir>]      default <DATA_DIR>/backups/<UTC time>
  npm run restore -- <dir> [--prune]   verifies every checksum before writing anything

Services: DATABASE_URL and S3_ENDPOINT (with the S3_* settings) when set; otherwise the
running npm start on DATA_DIR (its runtime.json); otherwise the embedded PostgreSQL and S3
of DATA_DIR, started for the duration (npm start must then be stopped).
pg_dump and pg_restore must be at least the server's major version: PG_BIN_DIR, then
.tools/postgresql-<major>/bin (bash local/pg-client.sh builds it), then
/usr/lib/postgresql/<major>/bin, then PATH.
--prune also deletes objects in the bucket that the backup does not hold.`

const REPO = fileURLToPath(new URL('../', import.meta.url))
const MANIFEST = 'manifest.json'
const DUMP = 'database.dump'
const OBJECTS = 'objects'
const PARALLEL = 4
const run = promisify(execFile)

export type ObjectEntry = {
  key: string
  size: number
  sha256: string
  contentType?: string
}

export type Manifest = {
  format: 1
  createdAt: string
  database: {
    file: string
    bytes: number
    sha256: string
    serverVersion: string
    pgDump: string
    migrations: string[]
    rows: Record<string, number>
  }
  storage: { bucket: string; objects: number; bytes: number }
  objects: ObjectEntry[]
}

export type Services = {
  databaseUrl: string
  source: string
  stop(): Promise<void>
}

class UsageError extends Error {}

// Only the settings this tool needs: it runs without the service's secrets (JWT...).
const toolSchema = configSchema.pick({
  DATA_DIR: true,
  DATABASE_URL: true,
  S3_ENDPOINT: true,
  S3_REGION: true,
  S3_BUCKET: true,
  S3_ACCESS_KEY_ID: true,
  S3_SECRET_ACCESS_KEY: true,
  S3_FORCE_PATH_STYLE: true,
})

function toolConfig(env: NodeJS.ProcessEnv = process.env) {
  return parseEnv(toolSchema, env)
}

let s3: S3Client | undefined

function getS3(): S3Client {
  s3 ??= createS3Client(toolConfig())
  return s3
}

function resetS3(): void {
  s3?.destroy()
  s3 = undefined
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function say(line: string): void {
  process.stdout.write(`${line}\n`)
}

/** Runs `work` on every item, `PARALLEL` at a time. */
async function eachParallel<T>(items: T[], work: (item: T) => Promise<void>) {
  let next = 0
  async function lane(): Promise<void> {
    while (next < items.length) {
      const item = items[next++] as T
      await work(item)
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, lane))
}

/** An object key as a relative file path; keys that could leave the folder are refused. */
function objectPath(root: string, key: string): string {
  const parts = key.split('/')
  if (
    key.startsWith('/') ||
    parts.some((part) => part === '' || part === '..' || part === '.')
  ) {
    throw new Error(
      `refusing the object key ${JSON.stringify(key)}: not a plain relative path`,
    )
  }
  return path.join(root, OBJECTS, ...parts)
}

// ---------------------------------------------------------------------------
// Finding the services

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  )
}

/**
 * The database and bucket to work on, in the order the usage text gives. Embedded
 * services started here are stopped by `stop()`.
 */
export async function resolveServices(purpose: 'backup' | 'restore'): Promise<Services> {
  const runtime = await useRunningServices(process.env)
  const started: EmbeddedService[] = []
  let source = 'DATABASE_URL and S3_ENDPOINT'
  if (runtime) {
    source = `the running npm start (process ${runtime.pid})`
    if (purpose === 'restore') {
      throw new Error(
        `npm start (process ${runtime.pid}) is running on this DATA_DIR: stop it before ` +
          'restoring, then run the restore again (it starts the embedded services itself)',
      )
    }
  } else if (!process.env.DATABASE_URL || !process.env.S3_ENDPOINT) {
    const dataDir = dataDirFrom(process.env)
    const pgDir = path.join(dataDir, 'postgres')
    if (purpose === 'backup' && !process.env.DATABASE_URL && !(await exists(pgDir))) {
      throw new Error(
        `no DATABASE_URL, no running npm start and no embedded database in ${pgDir}: ` +
          'nothing to back up',
      )
    }
    const lock = Number(
      (await readFile(path.join(dataDir, 'start.pid'), 'utf8').catch(() => '')).trim(),
    )
    if (lock > 0 && (await readRuntime(dataDir)) === undefined && isAlive(lock)) {
      throw new Error(
        `npm start (process ${lock}) is starting on this DATA_DIR; try again`,
      )
    }
    source = `the embedded services in ${dataDir}`
    try {
      if (!process.env.DATABASE_URL) {
        const postgres = await startEmbeddedPostgres({ dataDir: pgDir })
        started.push(postgres)
        process.env.DATABASE_URL = postgres.url
      }
      if (!process.env.S3_ENDPOINT) {
        const s3 = await startEmbeddedS3({ dataDir: path.join(dataDir, 's3') })
        started.push(s3)
        process.env.S3_ENDPOINT = s3.url
      }
    } catch (error) {
      await Promise.all(started.map((service) => service.stop()))
      throw error
    }
  }
  resetS3()
  const databaseUrl = toolConfig().DATABASE_URL as string
  return {
    databaseUrl,
    source,
    async stop() {
      resetS3()
      for (const service of started.reverse()) await service.stop()
    },
  }
}

// ---------------------------------------------------------------------------
// pg_dump and pg_restore

type PgTools = { pgDump: string; pgRestore: string; version: string; major: number }

async function toolVersion(
  binary: string,
): Promise<{ text: string; major: number } | undefined> {
  try {
    const { stdout } = await run(binary, ['--version'])
    const match = /\(PostgreSQL\)\s+(\d+)(\.\d+)*/.exec(stdout)
    return match ? { text: stdout.trim(), major: Number(match[1]) } : undefined
  } catch {
    return undefined
  }
}

async function listDirs(parent: string, pattern: RegExp): Promise<string[]> {
  const names = await readdir(parent).catch(() => [] as string[])
  return names
    .filter((name) => pattern.test(name))
    .sort((a, b) => Number(b.replace(/\D/g, '')) - Number(a.replace(/\D/g, '')))
    .map((name) => path.join(parent, name, 'bin'))
}

/** pg_dump and pg_restore from one folder, of a major at least `minMajor`. */
export async function findPgTools(minMajor: number): Promise<PgTools> {
  const candidates = [
    ...(process.env.PG_BIN_DIR ? [process.env.PG_BIN_DIR] : []),
    ...(await listDirs(path.join(REPO, '.tools'), /^postgresql-\d+$/)),
    ...(await listDirs('/usr/lib/postgresql', /^\d+$/)),
    ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean),
  ]
  const seen: string[] = []
  for (const dir of candidates) {
    const pgDump = path.join(dir, 'pg_dump')
    const pgRestore = path.join(dir, 'pg_restore')
    const version = await toolVersion(pgDump)
    if (!version) continue
    seen.push(`${pgDump} (${version.major})`)
    if (version.major >= minMajor && (await toolVersion(pgRestore))) {
      return { pgDump, pgRestore, version: version.text, major: version.major }
    }
  }
  throw new Error(
    `no pg_dump/pg_restore of PostgreSQL ${minMajor} or later was found` +
      (seen.length ? ` (found only ${seen.join(', ')})` : '') +
      `; run "bash local/pg-client.sh ${minMajor}" or set PG_BIN_DIR`,
  )
}

/** The URL without its password, which goes to libpq through PGPASSWORD instead. */
function libpqTarget(databaseUrl: string): { url: string; env: NodeJS.ProcessEnv } {
  const parsed = new URL(databaseUrl)
  const password = decodeURIComponent(parsed.password)
  parsed.password = ''
  return { url: parsed.toString(), env: { ...process.env, PGPASSWORD: password } }
}

async function runTool(binary: string, args: string[], env: NodeJS.ProcessEnv) {
  try {
    return await run(binary, args, { env, maxBuffer: 64 * 1024 * 1024 })
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim()
    throw new Error(
      `${path.basename(binary)} failed: ${stderr || (error as Error).message}`,
    )
  }
}

// ---------------------------------------------------------------------------
// Backup

async function describeDatabase(databaseUrl: string) {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const version = await client.query<{ server_version: string; num: string }>(
      "SELECT current_setting('server_version') AS server_version, current_setting('server_version_num') AS num",
    )
    const migrations = await client
      .query<{ version: string }>(
        'SELECT version FROM schema_migrations ORDER BY version',
      )
      .then((result) => result.rows.map((row) => row.version))
      .catch(() => [] as string[])
    const rows: Record<string, number> = {}
    for (const table of ['users', 'documents']) {
      rows[table] = await client
        .query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)
        .then((result) => result.rows[0]?.n ?? 0)
        .catch(() => 0)
    }
    const documents = await client
      .query<{ object_key: string; sha256: string }>(
        'SELECT object_key, sha256 FROM documents',
      )
      .then((result) => result.rows)
      .catch(() => [])
    const row = version.rows[0] as { server_version: string; num: string }
    return {
      serverVersion: row.server_version,
      major: Math.floor(Number(row.num) / 10_000),
      migrations,
      rows,
      documents,
    }
  } finally {
    await client.end()
  }
}

async function listObjects(bucket: string): Promise<{ key: string; size: number }[]> {
  const found: { key: string; size: number }[] = []
  let token: string | undefined
  do {
    const page = await getS3().send(
      new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
    )
    for (const item of page.Contents ?? []) {
      if (item.Key) found.push({ key: item.Key, size: item.Size ?? 0 })
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined
  } while (token)
  return found
}

async function readObject(bucket: string, key: string) {
  const result = await getS3().send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  if (!result.Body) throw new Error(`object ${key} has no body`)
  return {
    bytes: Buffer.from(await result.Body.transformToByteArray()),
    contentType: result.ContentType,
  }
}

function timestamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-')
}

/**
 * Dumps the database first, then mirrors the bucket: every row in the dump had its object
 * stored before the row committed, so the mirror holds it unless it was deleted since.
 */
export async function backup(services: Services, outDir: string): Promise<Manifest> {
  const bucket = toolConfig().S3_BUCKET
  if (await exists(path.join(outDir, MANIFEST))) {
    throw new Error(`${outDir} already holds a backup; choose another --out`)
  }
  await mkdir(path.join(outDir, OBJECTS), { recursive: true, mode: 0o700 })

  const database = await describeDatabase(services.databaseUrl)
  const tools = await findPgTools(database.major)
  const target = libpqTarget(services.databaseUrl)
  const dumpFile = path.join(outDir, DUMP)
  say(`dumping PostgreSQL ${database.serverVersion} with ${tools.pgDump}`)
  await runTool(
    tools.pgDump,
    ['--format=custom', '--compress=6', `--file=${dumpFile}`, `--dbname=${target.url}`],
    target.env,
  )
  // It holds password hashes: readable by this user only, whatever the umask.
  await chmod(dumpFile, 0o600)
  // The archive must be readable by pg_restore, not just present.
  await runTool(tools.pgRestore, ['--list', dumpFile], process.env)
  const dump = await readFile(dumpFile)

  say(`mirroring the bucket ${bucket}`)
  const objects: ObjectEntry[] = []
  await eachParallel(await listObjects(bucket), async ({ key }) => {
    const file = objectPath(outDir, key)
    const { bytes, contentType } = await readObject(bucket, key)
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
    await writeFile(file, bytes, { mode: 0o600 })
    objects.push({ key, size: bytes.length, sha256: sha256(bytes), contentType })
  })
  objects.sort((a, b) => a.key.localeCompare(b.key))

  const mirrored = new Map(objects.map((entry) => [entry.key, entry.sha256]))
  const missing = database.documents.filter(
    (doc) => mirrored.get(doc.object_key) !== doc.sha256,
  )
  for (const doc of missing) {
    say(`warning: the object of a document row is missing or differs: ${doc.object_key}`)
  }

  const manifest: Manifest = {
    format: 1,
    createdAt: new Date().toISOString(),
    database: {
      file: DUMP,
      bytes: dump.length,
      sha256: sha256(dump),
      serverVersion: database.serverVersion,
      pgDump: tools.version,
      migrations: database.migrations,
      rows: database.rows,
    },
    storage: {
      bucket,
      objects: objects.length,
      bytes: objects.reduce((sum, entry) => sum + entry.size, 0),
    },
    objects,
  }
  // Written last: a folder with a manifest holds a complete backup.
  await writeFile(path.join(outDir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, {
    mode: 0o600,
  })
  return manifest
}

// ---------------------------------------------------------------------------
// Restore

/** Checks the dump and every object file against the manifest; throws on any mismatch. */
export async function verifyBackup(dir: string): Promise<Manifest> {
  const manifest = JSON.parse(
    await readFile(path.join(dir, MANIFEST), 'utf8'),
  ) as Manifest
  if (manifest.format !== 1) throw new Error(`unknown backup format ${manifest.format}`)
  const problems: string[] = []
  const dump = await readFile(path.join(dir, manifest.database.file)).catch(
    () => undefined,
  )
  if (!dump) problems.push(`${manifest.database.file} is missing`)
  else if (sha256(dump) !== manifest.database.sha256) {
    problems.push(`${manifest.database.file} does not match its sha256`)
  }
  await eachParallel(manifest.objects, async (entry) => {
    const bytes = await readFile(objectPath(dir, entry.key)).catch(() => undefined)
    if (!bytes) problems.push(`object ${entry.key} is missing`)
    else if (bytes.length !== entry.size || sha256(bytes) !== entry.sha256) {
      problems.push(`object ${entry.key} does not match its sha256`)
    }
  })
  if (problems.length > 0) {
    throw new Error(`the backup in ${dir} is damaged:\n  ${problems.sort().join('\n  ')}`)
  }
  return manifest
}

async function ensureBucketExists(bucket: string): Promise<void> {
  try {
    await getS3().send(new HeadBucketCommand({ Bucket: bucket }))
  } catch {
    await getS3().send(new CreateBucketCommand({ Bucket: bucket }))
  }
}

/**
 * Drops every schema of the target database (pg-boss's partitioned tables defeat
 * pg_restore --clean), leaving an empty public schema for the archive to fill.
 */
async function emptyDatabase(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    await client.query('BEGIN')
    const { rows } = await client.query<{ name: string }>(
      `SELECT nspname AS name FROM pg_namespace
       WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'`,
    )
    for (const { name } of rows) {
      await client.query(`DROP SCHEMA ${client.escapeIdentifier(name)} CASCADE`)
    }
    await client.query('CREATE SCHEMA public')
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    await client.end()
  }
}

export type RestoreReport = { objects: number; pruned: number; extra: number }

export async function restore(
  services: Services,
  dir: string,
  options: { prune?: boolean } = {},
): Promise<RestoreReport> {
  const manifest = await verifyBackup(dir)
  say(
    `backup of ${manifest.createdAt} verified: ${manifest.database.file} and ` +
      `${manifest.objects.length} objects match the manifest`,
  )
  const archiveMajor = Number(
    /\(PostgreSQL\)\s+(\d+)/.exec(manifest.database.pgDump)?.[1],
  )
  const tools = await findPgTools(archiveMajor || 0)
  const target = libpqTarget(services.databaseUrl)
  say(`replacing the database with the backup's, using ${tools.pgRestore}`)
  await emptyDatabase(services.databaseUrl)
  await runTool(
    tools.pgRestore,
    [
      '--no-owner',
      '--no-privileges',
      '--exit-on-error',
      '--single-transaction',
      `--dbname=${target.url}`,
      path.join(dir, manifest.database.file),
    ],
    target.env,
  )

  const bucket = toolConfig().S3_BUCKET
  say(`restoring ${manifest.objects.length} objects into the bucket ${bucket}`)
  await ensureBucketExists(bucket)
  await eachParallel(manifest.objects, async (entry) => {
    const body = await readFile(objectPath(dir, entry.key))
    await getS3().send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: entry.key,
        Body: body,
        ContentLength: body.length,
        ContentType: entry.contentType,
      }),
    )
    // Read back: some S3-compatible servers store a different body than was sent.
    const stored = await readObject(bucket, entry.key)
    if (sha256(stored.bytes) !== entry.sha256) {
      throw new Error(`object ${entry.key} reads back with another sha256 after restore`)
    }
  })

  const wanted = new Set(manifest.objects.map((entry) => entry.key))
  const extra = (await listObjects(bucket)).filter((item) => !wanted.has(item.key))
  if (options.prune) {
    await eachParallel(extra, async (item) => {
      await getS3().send(new DeleteObjectCommand({ Bucket: bucket, Key: item.key }))
    })
  } else if (extra.length > 0) {
    say(
      `${extra.length} objects in the bucket are not in the backup (kept; --prune deletes them)`,
    )
  }
  return {
    objects: manifest.objects.length,
    pruned: options.prune ? extra.length : 0,
    extra: extra.length,
  }
}

// ---------------------------------------------------------------------------

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      prune: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  const [command, dir, ...rest] = positionals
  if (values.help || rest.length > 0) throw new UsageError(USAGE)
  if (command === 'backup' && !dir) {
    const outDir = path.resolve(
      values.out ?? path.join(dataDirFrom(process.env), 'backups', timestamp()),
    )
    const services = await resolveServices('backup')
    try {
      say(`backing up ${services.source} into ${outDir}`)
      const manifest = await backup(services, outDir)
      say(
        `backup complete: ${outDir} (database ${manifest.database.bytes} bytes, ` +
          `users ${manifest.database.rows.users}, documents ${manifest.database.rows.documents}, ` +
          `${manifest.storage.objects} objects, ${manifest.storage.bytes} bytes)`,
      )
    } finally {
      await services.stop()
    }
    return
  }
  if (command === 'restore' && dir && !values.out) {
    const backupDir = path.resolve(dir)
    await stat(path.join(backupDir, MANIFEST)).catch(() => {
      throw new Error(`${backupDir} holds no ${MANIFEST}: not a complete backup`)
    })
    // Verified before any service is touched.
    await verifyBackup(backupDir)
    const services = await resolveServices('restore')
    try {
      say(`restoring ${backupDir} into ${services.source}`)
      const report = await restore(services, backupDir, { prune: values.prune })
      say(`restore complete: ${report.objects} objects, ${report.pruned} pruned`)
    } finally {
      await services.stop()
    }
    return
  }
  throw new UsageError(USAGE)
}

if (import.meta.main) {
  try {
    await main(process.argv.slice(2))
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message)
      process.exit(2)
    }
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  }
}

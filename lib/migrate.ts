import { readdir, readFile } from 'node:fs/promises'
import type pg from 'pg'

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url)
// Any constant works; it only has to be the same for every process migrating.
const MIGRATION_LOCK_ID = 7_318_204

type Migration = { version: string; sql: string }

async function readMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((name) => name.endsWith('.sql'))
  files.sort()
  return Promise.all(
    files.map(async (name) => ({
      version: name.replace(/\.sql$/, ''),
      sql: await readFile(new URL(name, MIGRATIONS_DIR), 'utf8'),
    })),
  )
}

/**
 * Applies every migration not yet recorded, each in its own transaction. An advisory
 * lock keeps two processes starting at once from applying the same file twice.
 */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  const client = await pool.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID])
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version text PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const done = await client.query<{ version: string }>(
      'SELECT version FROM schema_migrations',
    )
    const applied = new Set(done.rows.map((row) => row.version))

    const ran: string[] = []
    for (const migration of await readMigrations()) {
      if (applied.has(migration.version)) continue
      await client.query('BEGIN')
      try {
        await client.query(migration.sql)
        await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [
          migration.version,
        ])
        await client.query('COMMIT')
      } catch (error) {
        await client.query('ROLLBACK')
        throw new Error(`migration ${migration.version} failed`, { cause: error })
      }
      ran.push(migration.version)
    }
    return ran
  } finally {
    await client
      .query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID])
      .catch(() => {})
    client.release()
  }
}

/** The migrations on disk that the database has not applied. */
export async function pendingMigrations(pool: pg.Pool): Promise<string[]> {
  const exists = await pool.query<{ present: boolean }>(
    "SELECT to_regclass('schema_migrations') IS NOT NULL AS present",
  )
  const applied = exists.rows[0]?.present
    ? new Set(
        (
          await pool.query<{ version: string }>('SELECT version FROM schema_migrations')
        ).rows.map((row) => row.version),
      )
    : new Set<string>()
  return (await readMigrations())
    .map((migration) => migration.version)
    .filter((version) => !applied.has(version))
}

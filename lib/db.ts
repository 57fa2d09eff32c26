import DataLoader from 'dataloader'
import pg from 'pg'
import { getConfig } from './config.ts'
import { serviceUnavailable } from './errors.ts'

// bigint columns (sizes, quotas) fit comfortably in a JS number for this service.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value))

let pool: pg.Pool | undefined

/** The process's connection pool, created on first use. */
export function getPool(): pg.Pool {
  if (!pool) {
    const config = getConfig()
    if (!config.DATABASE_URL) {
      throw new Error('DATABASE_URL is not set')
    }
    pool = new pg.Pool({
      connectionString: config.DATABASE_URL,
      max: config.DATABASE_POOL_MAX,
      connectionTimeoutMillis: 5_000,
      idleTimeoutMillis: 30_000,
      // Timestamps leave the database in UTC, whatever the server's own zone.
      options: '-c TimeZone=UTC',
    })
    // An idle client losing its connection must not take the process down.
    pool.on('error', () => {})
  }
  return pool
}

export async function closePool(): Promise<void> {
  const current = pool
  pool = undefined
  await current?.end()
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  '57P01', // admin_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
])

function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as { code?: string }).code
  if (code && UNAVAILABLE_CODES.has(code)) return true
  return /timeout exceeded when trying to connect|Connection terminated/i.test(
    error.message,
  )
}

/** Turns a connection failure into a 503; every other error passes through. */
export function translateDbError(error: unknown): unknown {
  return isUnavailable(error)
    ? serviceUnavailable('database_unavailable', 'The database is unavailable', error)
    : error
}

/**
 * Runs one statement on the pool. A statement given a name is prepared once per
 * connection and planned from then on without parsing: worth it on the hot paths.
 */
export async function query<Row extends pg.QueryResultRow>(
  statement: string | { name: string; text: string },
  values: unknown[] = [],
): Promise<pg.QueryResult<Row>> {
  const config = typeof statement === 'string' ? { text: statement } : statement
  try {
    return await getPool().query<Row>({ ...config, values })
  } catch (error) {
    throw translateDbError(error)
  }
}

// A batch holds at most this many items: one statement's arrays stay small.
const MAX_BATCH = 200

/**
 * Gathers the calls made in one turn of the event loop into one call of `load`, which
 * answers them in order (an Error in a place fails that call only). Under load one
 * round trip then serves many requests; on this kind of machine each round trip also
 * wakes a PostgreSQL backend, which costs more than most queries. The batch leaves after
 * the turn's I/O callbacks (setImmediate), once every request that arrived with it has
 * reached the call; a quiet process sends batches of one at once. No result is cached.
 */
export function batchLoader<Key, Value>(
  load: (keys: readonly Key[]) => Promise<(Value | Error)[]>,
): DataLoader<Key, Value> {
  return new DataLoader<Key, Value>(
    async (keys) => {
      try {
        return await load(keys)
      } catch (error) {
        if (keys.length === 1 || !isDataException(error)) throw translateDbError(error)
        // A value PostgreSQL refused fails the whole statement, and every request in
        // it with it. Inputs are checked before they join a batch; should one still
        // slip through, the items are tried one by one and only its own request fails.
        // Each batched statement is atomic, so the failed one changed nothing.
        return Promise.all(keys.map((key) => loadOne(load, key)))
      }
    },
    {
      cache: false,
      maxBatchSize: MAX_BATCH,
      batchScheduleFn: (dispatch) => setImmediate(dispatch),
    },
  )
}

async function loadOne<Key, Value>(
  load: (keys: readonly Key[]) => Promise<(Value | Error)[]>,
  key: Key,
): Promise<Value | Error> {
  try {
    const [value] = await load([key])
    return value as Value | Error
  } catch (error) {
    const translated = translateDbError(error)
    return translated instanceof Error ? translated : new Error(String(translated))
  }
}

// SQLSTATE class 22: a value the statement cannot take (a date out of range, bad text).
function isDataException(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' && code.startsWith('22')
}

/** Runs work inside one transaction, rolling back when it throws. */
export async function withTransaction<T>(
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  let client: pg.PoolClient
  try {
    client = await getPool().connect()
  } catch (error) {
    throw translateDbError(error)
  }

  try {
    await client.query('BEGIN')
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw translateDbError(error)
  } finally {
    client.release()
  }
}

export function isUniqueViolation(error: unknown, constraint?: string): boolean {
  const pgError = error as { code?: string; constraint?: string }
  return pgError?.code === '23505' && (!constraint || pgError.constraint === constraint)
}

import { badRequest } from './errors.ts'

export const UUID_PATTERN =
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Where a newest-first keyset page ends: the last row's timestamp and id. */
export type Cursor = { createdAt: string; id: string }

// As PostgreSQL prints a timestamptz in UTC: no microseconds are lost on the way.
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?\+00$/

/**
 * A timestamp of the printed shape that also names a real instant PostgreSQL accepts:
 * not February 30, hour 24 or year 0. A cursor is decoded before its query runs, and
 * page queries run in batches, where one value PostgreSQL refuses would fail them all.
 */
function isTimestamp(value: unknown): value is string {
  const parts = typeof value === 'string' ? TIMESTAMP.exec(value) : null
  if (!parts) return false
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = parts
    .slice(1, 7)
    .map(Number)
  const instant = new Date(Date.UTC(year, month - 1, day, hour, minute, second))
  instant.setUTCFullYear(year)
  return (
    year >= 1 &&
    instant.getUTCMonth() === month - 1 &&
    instant.getUTCDate() === day &&
    instant.getUTCHours() === hour &&
    instant.getUTCMinutes() === minute &&
    instant.getUTCSeconds() === second
  )
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt, cursor.id])).toString('base64url')
}

export function decodeCursor(value: string): Cursor {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'))
    if (!Array.isArray(parsed) || parsed.length !== 2) throw new TypeError('not a pair')
    const [createdAt, id] = parsed
    if (isTimestamp(createdAt) && typeof id === 'string' && UUID_PATTERN.test(id))
      return { createdAt, id }
  } catch {}
  throw badRequest('invalid_cursor', 'The cursor is not one this service gave out')
}

/**
 * One page from rows fetched with `LIMIT limit + 1`, each selected with its
 * `created_at::text AS created_text`: the extra row only says that a next page exists.
 */
export function keysetPage<Row extends { id: string; created_text: string }>(
  rows: Row[],
  limit: number,
): { items: Row[]; next?: string } {
  const items = rows.slice(0, limit)
  const last = items.at(-1)
  const next =
    rows.length > limit && last
      ? encodeCursor({ createdAt: last.created_text, id: last.id })
      : undefined
  return { items, next }
}

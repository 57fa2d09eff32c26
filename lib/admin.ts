import type pg from 'pg'
import { query, withTransaction } from './db.ts'
import { conflict, notFound } from './errors.ts'
import type { AuthUser } from './middleware/authenticate.ts'
import { decodeCursor, keysetPage } from './pagination.ts'
import { queueStats } from './queue.ts'
import { revokeAllSessions } from './sessions.ts'

export type Role = 'user' | 'admin'

type UserRow = {
  id: string
  email: string
  role: Role
  quota_bytes: number
  used_bytes: number
  disabled: boolean
  created_at: Date
  updated_at: Date
  documents: number
  active_sessions: number
}

export type UserChanges = { quotaBytes?: number; disabled?: boolean; role?: Role }

export type AuditEntry = {
  actor: AuthUser | { id: null; email: string }
  action: string
  targetType: 'user'
  targetId: string
  before: Record<string, unknown> | null
  after: Record<string, unknown> | null
  correlationId?: string
}

const COLUMNS = `u.id, u.email, u.role, u.quota_bytes, u.used_bytes, u.disabled,
  u.created_at, u.updated_at,
  (SELECT count(*)::int FROM documents d WHERE d.owner_id = u.id) AS documents,
  (SELECT count(*)::int FROM sessions s WHERE s.user_id = u.id
     AND s.revoked_at IS NULL AND s.expires_at > now()) AS active_sessions`

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** An account as admins see it: its settings and counts, never document contents. */
export function presentAdminUser(row: UserRow) {
  return {
    id: row.id,
    email: row.email,
    role: row.role,
    disabled: row.disabled,
    quota: { usedBytes: row.used_bytes, totalBytes: row.quota_bytes },
    documents: row.documents,
    activeSessions: row.active_sessions,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  }
}

// LIKE's own wildcards in a search are plain characters.
function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (char) => `\\${char}`)}%`
}

/** One page of accounts, newest first, optionally those whose email contains a text. */
export async function listUsers(options: {
  limit: number
  cursor?: string
  email?: string
}): Promise<{ items: UserRow[]; next?: string }> {
  const cursor = options.cursor ? decodeCursor(options.cursor) : undefined
  const { rows } = await query<UserRow & { created_text: string }>(
    `SELECT ${COLUMNS}, u.created_at::text AS created_text FROM users u
     WHERE ($1::text IS NULL OR u.email ILIKE $1)
       AND ($2::timestamptz IS NULL OR (u.created_at, u.id) < ($2::timestamptz, $3::uuid))
     ORDER BY u.created_at DESC, u.id DESC
     LIMIT $4`,
    [
      options.email ? containsPattern(options.email) : null,
      cursor?.createdAt ?? null,
      cursor?.id ?? null,
      options.limit + 1,
    ],
  )

  return keysetPage(rows, options.limit)
}

async function selectUser(
  client: pg.PoolClient | undefined,
  id: string,
  lock = false,
): Promise<UserRow> {
  if (!UUID.test(id)) throw notFound('No such account')
  const sql = `SELECT ${COLUMNS} FROM users u WHERE u.id = $1${lock ? ' FOR UPDATE' : ''}`
  const { rows } = client
    ? await client.query<UserRow>(sql, [id])
    : await query<UserRow>(sql, [id])
  if (!rows[0]) throw notFound('No such account')
  return rows[0]
}

export function findUser(id: string): Promise<UserRow> {
  return selectUser(undefined, id)
}

/** Records an admin action in the same transaction as the action itself. */
export async function writeAudit(
  client: pg.PoolClient,
  entry: AuditEntry,
): Promise<void> {
  await client.query(
    `INSERT INTO audit_log
       (actor_id, actor, action, target_type, target_id, before, after, correlation_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [
      entry.actor.id,
      entry.actor.email,
      entry.action,
      entry.targetType,
      entry.targetId,
      entry.before && JSON.stringify(entry.before),
      entry.after && JSON.stringify(entry.after),
      entry.correlationId ?? null,
    ],
  )
}

function settings(row: Pick<UserRow, 'quota_bytes' | 'disabled' | 'role'>) {
  return { quotaBytes: row.quota_bytes, disabled: row.disabled, role: row.role }
}

/**
 * Changes an account's quota, disabled flag or role, with an audit record. Disabling
 * revokes every session; an admin cannot disable or demote their own account.
 */
export async function updateUser(
  actor: AuthUser,
  id: string,
  changes: UserChanges,
  correlationId: string,
): Promise<{ user: UserRow; audit: AuditEntry }> {
  return withTransaction(async (client) => {
    const current = await selectUser(client, id, true)
    if (actor.id === id && (changes.disabled === true || changes.role === 'user'))
      throw conflict('own_account', 'Admins cannot disable or demote their own account')

    await client.query(
      `UPDATE users SET quota_bytes = coalesce($2, quota_bytes),
         disabled = coalesce($3, disabled), role = coalesce($4, role), updated_at = now()
       WHERE id = $1`,
      [id, changes.quotaBytes ?? null, changes.disabled ?? null, changes.role ?? null],
    )
    if (changes.disabled === true && !current.disabled)
      await revokeAllSessions(client, id, 'disabled')
    const user = await selectUser(client, id)

    const audit: AuditEntry = {
      actor,
      action: 'user.update',
      targetType: 'user',
      targetId: id,
      before: settings(current),
      after: settings(user),
      correlationId,
    }
    await writeAudit(client, audit)
    return { user, audit }
  })
}

/** Ends every session of an account (refresh and access tokens), with an audit record. */
export async function revokeUserSessions(
  actor: AuthUser,
  id: string,
  correlationId: string,
): Promise<AuditEntry> {
  return withTransaction(async (client) => {
    const current = await selectUser(client, id, true)
    await revokeAllSessions(client, id, 'admin')

    const audit: AuditEntry = {
      actor,
      action: 'user.sessions.revoke',
      targetType: 'user',
      targetId: id,
      before: { activeSessions: current.active_sessions },
      after: { activeSessions: 0 },
      correlationId,
    }
    await writeAudit(client, audit)
    return audit
  })
}

type StatsRow = {
  users: number
  admins: number
  disabled: number
  documents: number
  bytes: number
  by_status: Record<string, number> | null
}

/** Counts for the admin dashboard: accounts, documents, bytes, extraction by status. */
export async function serviceStats() {
  const { rows } = await query<StatsRow>(
    `SELECT
       (SELECT count(*)::int FROM users) AS users,
       (SELECT count(*)::int FROM users WHERE role = 'admin') AS admins,
       (SELECT count(*)::int FROM users WHERE disabled) AS disabled,
       (SELECT count(*)::int FROM documents) AS documents,
       (SELECT coalesce(sum(size_bytes), 0)::bigint FROM documents) AS bytes,
       (SELECT jsonb_object_agg(status, n) FROM
         (SELECT status, count(*)::int AS n FROM documents GROUP BY status) AS s)
         AS by_status`,
  )
  const row = rows[0] as StatsRow
  const byStatus = { pending: 0, processing: 0, done: 0, failed: 0, skipped: 0 }
  Object.assign(byStatus, row.by_status ?? {})
  // pg-boss creates its tables on first start; before that there is no queue to count.
  const queue = await queueStats().catch(() => null)

  return {
    users: { total: row.users, admins: row.admins, disabled: row.disabled },
    documents: { total: row.documents, bytes: row.bytes },
    extraction: { byStatus, queue },
  }
}

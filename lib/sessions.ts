import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type pg from 'pg'
import { getConfig } from './config.ts'
import { query, withTransaction } from './db.ts'
import type { ApiEvent } from './http.ts'
import { publicBaseUrl } from './public-url.ts'

/**
 * `__Host-`: the browser accepts the cookie only with Secure, Path=/ and no Domain, so no
 * sibling subdomain can set or shadow it (cookie tossing), which a `__Secure-` cookie
 * scoped to /auth would allow. The refresh token is then sent to every path of the API,
 * where only /auth/refresh and /auth/logout read it.
 */
export const REFRESH_COOKIE = '__Host-refresh'
/** The CSRF token again, readable by a same-host front end after a page reload. */
export const CSRF_COOKIE = '__Host-csrf'
export const CSRF_HEADER = 'x-csrf-token'

export type RevokeReason = 'logout' | 'reuse' | 'password_reset' | 'admin' | 'disabled'

export type IssuedSession = {
  sessionId: string
  userId: string
  refreshToken: string
  csrfToken: string
  /** Seconds until the refresh token expires: the cookie's Max-Age. */
  maxAgeSeconds: number
}

export type RefreshOutcome =
  | ({ kind: 'rotated'; role: 'user' | 'admin'; version: number } & IssuedSession)
  | { kind: 'reused'; sessionId: string; userId: string }
  | { kind: 'invalid' }

type SessionRow = { id: string; user_id: string; csrf_key: Buffer }

// 256 random bits: a lookup by its sha256 reveals nothing usable through timing, since
// finding a token whose hash shares a prefix with a stored one is no step towards it.
function newToken(): { token: string; hash: Buffer } {
  const token = randomBytes(32).toString('base64url')
  return { token, hash: hashToken(token) }
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

/** Compares two strings in time that depends on their length only. */
export function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

function csrfMac(key: Buffer, sessionId: string, nonce: string): string {
  return createHmac('sha256', key).update(`${sessionId}.${nonce}`).digest('base64url')
}

/** A CSRF token bound to one session: a nonce and its HMAC under the session's key. */
export function csrfToken(session: { id: string; csrfKey: Buffer }): string {
  const nonce = randomBytes(16).toString('base64url')
  return `${nonce}.${csrfMac(session.csrfKey, session.id, nonce)}`
}

export function verifyCsrfToken(
  session: { id: string; csrfKey: Buffer },
  token: string,
): boolean {
  const [nonce, mac, extra] = token.split('.')
  if (!nonce || !mac || extra !== undefined || nonce.length > 64) return false
  return safeEqual(mac, csrfMac(session.csrfKey, session.id, nonce))
}

async function insertToken(
  client: pg.PoolClient,
  sessionId: string,
  parentId: string | null,
): Promise<{ token: string; maxAgeSeconds: number }> {
  const { token, hash } = newToken()
  const { rows } = await client.query<{ max_age: number }>(
    `INSERT INTO refresh_tokens (session_id, parent_id, token_hash, expires_at)
     SELECT s.id, $2, $3, least(now() + make_interval(secs => $4), s.expires_at)
     FROM sessions s WHERE s.id = $1
     RETURNING greatest(0, floor(extract(epoch FROM expires_at - now())))::int AS max_age`,
    [sessionId, parentId, hash, getConfig().REFRESH_TOKEN_TTL_SECONDS],
  )
  return { token, maxAgeSeconds: rows[0]?.max_age ?? 0 }
}

/** Opens a session for a login: a new token family and its CSRF key. */
export async function createSession(userId: string): Promise<IssuedSession> {
  const csrfKey = randomBytes(32)
  return withTransaction(async (client) => {
    // Sessions past their lifetime are only clutter; each login sweeps its own.
    await client.query(
      "DELETE FROM sessions WHERE user_id = $1 AND expires_at < now() - interval '1 day'",
      [userId],
    )
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO sessions (user_id, csrf_key, expires_at)
       VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING id`,
      [userId, csrfKey, getConfig().SESSION_MAX_SECONDS],
    )
    const sessionId = (rows[0] as { id: string }).id
    const issued = await insertToken(client, sessionId, null)
    return {
      sessionId,
      userId,
      refreshToken: issued.token,
      csrfToken: csrfToken({ id: sessionId, csrfKey }),
      maxAgeSeconds: issued.maxAgeSeconds,
    }
  })
}

type PresentedRow = {
  id: string
  token_hash: Buffer
  session_id: string
  user_id: string
  csrf_key: Buffer
  role: 'user' | 'admin'
  token_version: number
  live: boolean
  spent: boolean
  within_grace: boolean
}

/**
 * Spends a refresh token and issues its successor (RFC 9700, section 4.14.2). A token
 * spent earlier is accepted again only within the grace period, for two tabs refreshing
 * at once; later it is taken as stolen and its whole session (every token of the family)
 * is revoked. The row lock serialises concurrent refreshes of one token.
 */
export async function rotateRefreshToken(token: string): Promise<RefreshOutcome> {
  const hash = hashToken(token)
  return withTransaction(async (client) => {
    const { rows } = await client.query<PresentedRow>(
      `SELECT t.id, t.token_hash, t.session_id, s.user_id, s.csrf_key, u.role,
              u.token_version,
              (s.revoked_at IS NULL AND s.expires_at > now() AND t.expires_at > now()
                AND NOT u.disabled) AS live,
              t.used_at IS NOT NULL AS spent,
              coalesce(t.used_at >= now() - make_interval(secs => $2), false)
                AS within_grace
       FROM refresh_tokens t
       JOIN sessions s ON s.id = t.session_id
       JOIN users u ON u.id = s.user_id
       WHERE t.token_hash = $1
       FOR UPDATE OF t`,
      [hash, getConfig().REFRESH_REUSE_GRACE_SECONDS],
    )
    const row = rows[0]
    if (!row || !timingSafeEqual(row.token_hash, hash) || !row.live)
      return { kind: 'invalid' }

    if (row.spent && !row.within_grace) {
      await revokeSessionWith(client, row.session_id, 'reuse')
      return { kind: 'reused', sessionId: row.session_id, userId: row.user_id }
    }

    if (!row.spent) {
      await client.query('UPDATE refresh_tokens SET used_at = now() WHERE id = $1', [
        row.id,
      ])
    }
    const issued = await insertToken(client, row.session_id, row.id)
    return {
      kind: 'rotated',
      sessionId: row.session_id,
      userId: row.user_id,
      role: row.role,
      version: row.token_version,
      refreshToken: issued.token,
      csrfToken: csrfToken({ id: row.session_id, csrfKey: row.csrf_key }),
      maxAgeSeconds: issued.maxAgeSeconds,
    }
  })
}

/**
 * The live session a refresh token belongs to, spent or not: CSRF tokens are bound to
 * the session, which outlives each of its refresh tokens.
 */
export async function findSession(
  token: string,
): Promise<{ id: string; userId: string; csrfKey: Buffer } | undefined> {
  const hash = hashToken(token)
  const { rows } = await query<SessionRow & { token_hash: Buffer }>(
    `SELECT s.id, s.user_id, s.csrf_key, t.token_hash
     FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
     WHERE t.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()`,
    [hash],
  )
  const row = rows[0]
  if (!row || !timingSafeEqual(row.token_hash, hash)) return undefined
  return { id: row.id, userId: row.user_id, csrfKey: row.csrf_key }
}

async function revokeSessionWith(
  client: pg.PoolClient | undefined,
  sessionId: string,
  reason: RevokeReason,
): Promise<void> {
  const sql = `UPDATE sessions SET revoked_at = now(), revoked_reason = $2
               WHERE id = $1 AND revoked_at IS NULL`
  if (client) await client.query(sql, [sessionId, reason])
  else await query(sql, [sessionId, reason])
}

/** Revokes one session: every refresh token of its family stops working. */
export async function revokeSession(
  sessionId: string,
  reason: RevokeReason,
): Promise<void> {
  await revokeSessionWith(undefined, sessionId, reason)
}

/**
 * Revokes every session of an account and raises its token version, so that its access
 * tokens are refused at their next request too. Returns how many sessions were live.
 */
export async function revokeAllSessions(
  client: pg.PoolClient,
  userId: string,
  reason: RevokeReason,
): Promise<number> {
  const revoked = await client.query(
    `UPDATE sessions SET revoked_at = now(), revoked_reason = $2
     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()`,
    [userId, reason],
  )
  await client.query('UPDATE users SET token_version = token_version + 1 WHERE id = $1', [
    userId,
  ])
  return revoked.rowCount ?? 0
}

/** The value of a request cookie; the first one when a name appears twice. */
export function readCookie(event: ApiEvent, name: string): string | undefined {
  for (const cookie of event.cookies ?? []) {
    const equals = cookie.indexOf('=')
    if (equals > 0 && cookie.slice(0, equals).trim() === name)
      return cookie.slice(equals + 1).trim()
  }
  return undefined
}

/** Set-Cookie values for a session: the httpOnly refresh cookie and the CSRF cookie. */
export function sessionCookies(session: IssuedSession): string[] {
  const attributes = `Path=/; Max-Age=${session.maxAgeSeconds}; Secure; SameSite=Strict`
  return [
    `${REFRESH_COOKIE}=${session.refreshToken}; ${attributes}; HttpOnly`,
    `${CSRF_COOKIE}=${session.csrfToken}; ${attributes}`,
  ]
}

/** Set-Cookie values that remove both session cookies. */
export function clearedSessionCookies(): string[] {
  const attributes = 'Path=/; Max-Age=0; Secure; SameSite=Strict'
  return [`${REFRESH_COOKIE}=; ${attributes}; HttpOnly`, `${CSRF_COOKIE}=; ${attributes}`]
}

/**
 * The origins a browser may send from: ALLOWED_ORIGINS; when it is empty, the origin of
 * PUBLIC_BASE_URL; without that either, the local gateway under its loopback names.
 */
export function allowedOrigins(): string[] {
  const config = getConfig()
  if (config.ALLOWED_ORIGINS.length > 0) return config.ALLOWED_ORIGINS
  if (config.PUBLIC_BASE_URL) return [new URL(publicBaseUrl()).origin]
  return ['localhost', '127.0.0.1', '[::1]'].map(
    (host) => `http://${host}:${config.PORT}`,
  )
}

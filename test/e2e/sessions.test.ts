import { createHash, randomBytes } from 'node:crypto'
import { decodeProtectedHeader } from 'jose'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { resetConfig } from '../../lib/config.ts'
import { query } from '../../lib/db.ts'
import { startApp, type TestApp } from '../support/app.ts'
import { postJson } from '../support/http.ts'
import {
  absorb,
  type BrowserSession,
  login,
  me,
  refresh,
  registerSession,
  setCookies,
} from '../support/sessions.ts'

const ALLOWED_ORIGIN = 'https://app.docservice.test'

let app: TestApp
const savedEnv = { ...process.env }

function configure(changes: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined) delete process.env[name]
    else process.env[name] = value
  }
  resetConfig()
}

beforeAll(async () => {
  configure({ ALLOWED_ORIGINS: ALLOWED_ORIGIN })
  app = await startApp({ worker: false })
})

afterEach(() => {
  // Each test leaves the configuration as the file started it.
  configure({
    REFRESH_REUSE_GRACE_SECONDS: savedEnv.REFRESH_REUSE_GRACE_SECONDS,
    JWT_SECRET: savedEnv.JWT_SECRET,
    JWT_SIGNING_KEYS: savedEnv.JWT_SIGNING_KEYS,
  })
})

afterAll(async () => {
  await app?.stop()
  configure({ ALLOWED_ORIGINS: savedEnv.ALLOWED_ORIGINS })
})

function sha256(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

async function code(response: Response): Promise<string> {
  return ((await response.json()) as { code: string }).code
}

async function rotated(session: BrowserSession): Promise<BrowserSession> {
  return absorb(session, await refresh(app.url, session))
}

describe('POST /auth/login', () => {
  it('sets a __Host- refresh cookie: HttpOnly, Secure, SameSite=Strict, Path=/', async () => {
    const session = await registerSession(app.url)

    const response = await postJson(
      `${app.url}/auth/login`,
      { email: session.email, password: session.password },
      { 'x-forwarded-for': session.ip },
    )
    const cookies = setCookies(response)
    const refreshCookie = cookies.get('__Host-refresh')
    const csrfCookie = cookies.get('__Host-csrf')
    const body = (await response.json()) as { csrfToken: string }

    expect(response.status).toBe(200)
    expect(refreshCookie?.attributes).toEqual(
      new Map([
        ['path', '/'],
        ['max-age', String(7 * 24 * 3600)],
        ['secure', ''],
        ['samesite', 'Strict'],
        ['httponly', ''],
      ]),
    )
    expect(csrfCookie?.attributes.has('httponly')).toBe(false)
    expect(csrfCookie?.attributes.get('samesite')).toBe('Strict')
    expect(csrfCookie?.value).toBe(body.csrfToken)
    expect(refreshCookie?.value).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it('stores the refresh token only as its sha256', async () => {
    const session = await registerSession(app.url)

    const { rows } = await query<Record<string, unknown>>(
      'SELECT * FROM refresh_tokens WHERE token_hash = $1',
      [sha256(session.refreshToken)],
    )
    const everything = await query<{ dump: string }>(
      `SELECT string_agg(t::text, ' ') AS dump FROM refresh_tokens t`,
    )

    expect(rows).toHaveLength(1)
    expect(everything.rows[0]?.dump).not.toContain(session.refreshToken)
  })

  it('refuses a login that a browser marks as cross-site', async () => {
    const session = await registerSession(app.url)

    const response = await postJson(
      `${app.url}/auth/login`,
      { email: session.email, password: session.password },
      { 'sec-fetch-site': 'cross-site', 'x-forwarded-for': session.ip },
    )

    expect(response.status).toBe(403)
    expect(await code(response)).toBe('cross_site_request')
    expect(response.headers.getSetCookie()).toEqual([])
  })
})

describe('POST /auth/refresh', () => {
  it('rotates: a new access token, refresh token and cookie, the old token spent', async () => {
    const session = await registerSession(app.url)

    const response = await refresh(app.url, session)
    const next = await absorb(session, response)
    const spent = await query<{ used_at: Date | null }>(
      'SELECT used_at FROM refresh_tokens WHERE token_hash = $1',
      [sha256(session.refreshToken)],
    )

    expect(next.refreshToken).not.toBe(session.refreshToken)
    expect(spent.rows[0]?.used_at).toBeInstanceOf(Date)
    expect((await me(app.url, next.accessToken)).status).toBe(200)
    expect(setCookies(response).get('__Host-refresh')?.attributes.get('httponly')).toBe(
      '',
    )
    expect(response.headers.get('vary')).toContain('Cookie')
  })

  it('lets two tabs refresh with the same token at once (grace period)', async () => {
    const session = await registerSession(app.url)

    const [first, second] = await Promise.all([
      refresh(app.url, session),
      refresh(app.url, session),
    ])
    const tabA = await absorb(session, first)
    const tabB = await absorb(session, second)

    expect(tabA.refreshToken).not.toBe(tabB.refreshToken)
    expect((await refresh(app.url, tabA)).status).toBe(200)
    expect((await refresh(app.url, tabB)).status).toBe(200)
  })

  it('revokes the whole family when a spent token comes back after the grace period', async () => {
    configure({ REFRESH_REUSE_GRACE_SECONDS: '0' })
    const first = await registerSession(app.url)
    const second = await rotated(first)
    const third = await rotated(second)

    const replay = await refresh(app.url, first)
    const replayCookies = setCookies(replay)
    const replayCode = await code(replay)
    const latest = await refresh(app.url, third)
    const { rows } = await query<{ revoked_reason: string }>(
      `SELECT s.revoked_reason FROM sessions s
       JOIN refresh_tokens t ON t.session_id = s.id WHERE t.token_hash = $1`,
      [sha256(third.refreshToken)],
    )

    expect(replay.status).toBe(401)
    expect(replayCode).toBe('refresh_token_reused')
    expect(replayCookies.get('__Host-refresh')?.attributes.get('max-age')).toBe('0')
    expect(latest.status).toBe(401)
    expect(await code(latest)).toBe('invalid_refresh_token')
    expect(rows[0]?.revoked_reason).toBe('reuse')
  })

  it('refuses a session past its lifetime', async () => {
    const session = await registerSession(app.url)
    await query(
      `UPDATE sessions SET expires_at = now() - interval '1 second'
       WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = $1)`,
      [sha256(session.refreshToken)],
    )

    const response = await refresh(app.url, session)

    expect(response.status).toBe(401)
  })

  it('refuses a refresh token past its idle lifetime', async () => {
    const session = await registerSession(app.url)
    await query(
      `UPDATE refresh_tokens SET expires_at = now() - interval '1 second'
       WHERE token_hash = $1`,
      [sha256(session.refreshToken)],
    )

    const response = await refresh(app.url, session)

    expect(response.status).toBe(401)
  })

  it('answers 401 without a cookie', async () => {
    const response = await fetch(`${app.url}/auth/refresh`, { method: 'POST' })

    expect(response.status).toBe(401)
    expect(await code(response)).toBe('invalid_refresh_token')
  })

  it('refuses a disabled account at once, refresh and access token alike', async () => {
    const session = await registerSession(app.url)
    await query('UPDATE users SET disabled = true WHERE lower(email) = lower($1)', [
      session.email,
    ])

    expect((await refresh(app.url, session)).status).toBe(401)
    expect((await me(app.url, session.accessToken)).status).toBe(401)
  })
})

describe('cross-site refresh', () => {
  it.each([
    [
      'Sec-Fetch-Site: cross-site',
      { 'sec-fetch-site': 'cross-site' },
      'cross_site_request',
    ],
    ['a foreign Origin', { origin: 'https://evil.example' }, 'origin_not_allowed'],
    ['Origin: null', { origin: 'null' }, 'origin_not_allowed'],
    ['no CSRF token', { 'x-csrf-token': undefined }, 'csrf_token_invalid'],
    ['a forged CSRF token', { 'x-csrf-token': 'abc.def' }, 'csrf_token_invalid'],
  ])('is refused with %s', async (_label, overrides, expected) => {
    const session = await registerSession(app.url)

    const response = await refresh(app.url, session, overrides)
    const after = await refresh(app.url, session)

    expect(response.status).toBe(403)
    expect(await code(response)).toBe(expected)
    expect(response.headers.get('vary')).toMatch(/Origin.*Sec-Fetch-Site.*X-CSRF-Token/)
    // The refusal spent nothing: the real page can still refresh.
    expect(after.status).toBe(200)
  })

  it('refuses the CSRF token of another session', async () => {
    const victim = await registerSession(app.url)
    const attacker = await registerSession(app.url)

    const response = await refresh(app.url, victim, {
      'x-csrf-token': attacker.csrfToken,
      cookie: `__Host-refresh=${victim.refreshToken}`,
    })

    expect(response.status).toBe(403)
    expect(await code(response)).toBe('csrf_token_invalid')
  })

  it('refuses a header token that differs from the CSRF cookie', async () => {
    const session = await registerSession(app.url)
    const other = await rotated(session)

    const response = await refresh(app.url, other, {
      cookie: `__Host-refresh=${other.refreshToken}; __Host-csrf=${session.csrfCookie}`,
    })

    expect(response.status).toBe(403)
  })

  it('accepts an allowed Origin, same-site metadata and a token from an earlier answer', async () => {
    const session = await registerSession(app.url)

    const response = await refresh(app.url, session, {
      origin: ALLOWED_ORIGIN,
      'sec-fetch-site': 'same-site',
    })

    expect(response.status).toBe(200)
  })
})

describe('POST /auth/logout', () => {
  it('revokes the session and clears both cookies', async () => {
    const session = await registerSession(app.url)

    const response = await fetch(`${app.url}/auth/logout`, {
      method: 'POST',
      headers: {
        cookie: `__Host-refresh=${session.refreshToken}; __Host-csrf=${session.csrfCookie}`,
        'x-csrf-token': session.csrfToken,
        'x-forwarded-for': session.ip,
      },
    })
    const cookies = setCookies(response)
    const after = await refresh(app.url, session)

    expect(response.status).toBe(204)
    expect(cookies.get('__Host-refresh')?.value).toBe('')
    expect(cookies.get('__Host-refresh')?.attributes.get('max-age')).toBe('0')
    expect(cookies.get('__Host-csrf')?.attributes.get('max-age')).toBe('0')
    expect(after.status).toBe(401)
  })

  it('needs the CSRF token to end a live session', async () => {
    const session = await registerSession(app.url)

    const response = await fetch(`${app.url}/auth/logout`, {
      method: 'POST',
      headers: { cookie: `__Host-refresh=${session.refreshToken}` },
    })

    expect(response.status).toBe(403)
    expect((await refresh(app.url, session)).status).toBe(200)
  })
})

describe('signing key rotation', () => {
  it('keeps tokens of the old key valid while it is listed, and issues new ones with the new key', async () => {
    const session = await registerSession(app.url)
    const oldKid = decodeProtectedHeader(session.accessToken).kid
    const newSecret = randomBytes(48).toString('base64url')

    configure({ JWT_SIGNING_KEYS: `k2=${newSecret}` })
    const oldStillValid = await me(app.url, session.accessToken)
    const fresh = await login(app.url, session)
    configure({ JWT_SECRET: undefined, JWT_SIGNING_KEYS: `k2=${newSecret}` })
    const oldRetired = await me(app.url, session.accessToken)
    const freshStillValid = await me(app.url, fresh.accessToken)

    expect(oldKid).toBeTruthy()
    expect(oldStillValid.status).toBe(200)
    expect(decodeProtectedHeader(fresh.accessToken).kid).toBe('k2')
    expect(oldRetired.status).toBe(401)
    expect(freshStillValid.status).toBe(200)
  })
})

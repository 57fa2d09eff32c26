import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resetConfig } from '../../lib/config.ts'
import { query } from '../../lib/db.ts'
import { closeMail } from '../../lib/mail.ts'
import { type MailCatcher, startMailCatcher } from '../../local/mail-catcher.ts'
import { startApp, type TestApp } from '../support/app.ts'
import { postJson, randomClientIp, randomEmail } from '../support/http.ts'
import { login, me, refresh, registerSession } from '../support/sessions.ts'

const PUBLIC_BASE_URL = 'http://localhost:5173'
const FLOOR_MS = 300

let app: TestApp
let catcher: MailCatcher
const savedEnv = { ...process.env }

beforeAll(async () => {
  catcher = await startMailCatcher()
  Object.assign(process.env, {
    SMTP_URL: catcher.url,
    PUBLIC_BASE_URL,
    PASSWORD_RESET_MIN_RESPONSE_MS: String(FLOOR_MS),
  })
  app = await startApp({ worker: false })
})

afterAll(async () => {
  await app?.stop()
  closeMail()
  await catcher?.stop()
  for (const name of ['SMTP_URL', 'PUBLIC_BASE_URL', 'PASSWORD_RESET_MIN_RESPONSE_MS'])
    if (savedEnv[name] === undefined) delete process.env[name]
  resetConfig()
})

function requestReset(email: string, ip = randomClientIp()): Promise<Response> {
  return postJson(
    `${app.url}/auth/password-reset/request`,
    { email },
    {
      'x-forwarded-for': ip,
    },
  )
}

function confirmReset(token: string, password: string): Promise<Response> {
  return postJson(`${app.url}/auth/password-reset/confirm`, { token, password })
}

async function resetTokenFor(email: string): Promise<{ token: string; link: string }> {
  const mail = await catcher.waitForMail((candidate) => candidate.to.includes(email))
  const link = mail.text.match(/https?:\/\/\S+/)?.[0] ?? ''
  const token = new URL(link).hash.replace(/^#token=/, '')
  return { token, link }
}

function loginStatus(email: string, password: string): Promise<number> {
  return postJson(`${app.url}/auth/login`, { email, password }).then((r) => r.status)
}

describe('POST /auth/password-reset/request', () => {
  it('mails one account no more often than its limit, from however many addresses', async () => {
    const session = await registerSession(app.url)

    const answers = await Promise.all(
      Array.from({ length: 7 }, () => requestReset(session.email, randomClientIp())),
    )
    await resetTokenFor(session.email)
    const { rows } = await query<{ count: number }>(
      `SELECT count(*)::int AS count FROM password_reset_tokens t JOIN users u ON u.id = t.user_id
       WHERE u.email = $1`,
      [session.email],
    )

    expect(answers.map((answer) => answer.status)).toEqual(Array(7).fill(202))
    expect(rows[0]?.count).toBe(5)
  })

  it('mails a link that sets a new password once only', async () => {
    const session = await registerSession(app.url)

    const requested = await requestReset(session.email)
    const { token, link } = await resetTokenFor(session.email)
    const confirmed = await confirmReset(token, 'a brand new password')
    const again = await confirmReset(token, 'yet another new password')

    expect(requested.status).toBe(202)
    expect(link.startsWith(`${PUBLIC_BASE_URL}/reset-password#token=`)).toBe(true)
    expect(confirmed.status).toBe(204)
    expect(again.status).toBe(400)
    expect(((await again.json()) as { code: string }).code).toBe('invalid_reset_token')
    expect(await loginStatus(session.email, 'a brand new password')).toBe(200)
    expect(await loginStatus(session.email, session.password)).toBe(401)
  })

  it('answers a known and an unknown email alike, no sooner than the floor', async () => {
    const session = await registerSession(app.url)
    const unknown = randomEmail()

    const knownStart = performance.now()
    const known = await requestReset(session.email)
    const knownMs = performance.now() - knownStart
    const unknownStart = performance.now()
    const stranger = await requestReset(unknown)
    const unknownMs = performance.now() - unknownStart
    await resetTokenFor(session.email)

    expect(known.status).toBe(202)
    expect(stranger.status).toBe(202)
    expect(await known.text()).toBe(await stranger.text())
    expect([...known.headers.keys()].sort()).toEqual([...stranger.headers.keys()].sort())
    expect(knownMs).toBeGreaterThanOrEqual(FLOOR_MS - 5)
    expect(unknownMs).toBeGreaterThanOrEqual(FLOOR_MS - 5)
    // The send is awaited before the answer, so a mail would be here already.
    expect(catcher.messages().some((mail) => mail.to.includes(unknown))).toBe(false)
  })

  it('stores the reset token only as its sha256', async () => {
    const session = await registerSession(app.url)

    await requestReset(session.email)
    const { token } = await resetTokenFor(session.email)
    const { rows } = await query<{ dump: string }>(
      'SELECT string_agg(t::text, $1) AS dump FROM password_reset_tokens t',
      [' '],
    )
    const hashed = await query(
      'SELECT 1 FROM password_reset_tokens WHERE token_hash = $1',
      [createHash('sha256').update(token).digest()],
    )

    expect(rows[0]?.dump).not.toContain(token)
    expect(hashed.rowCount).toBe(1)
  })

  it('limits requests to 5 per hour per address', async () => {
    const ip = randomClientIp()

    const statuses: number[] = []
    for (let attempt = 0; attempt < 6; attempt++)
      statuses.push((await requestReset(randomEmail(), ip)).status)

    expect(statuses).toEqual([202, 202, 202, 202, 202, 429])
  })
})

describe('POST /auth/password-reset/confirm', () => {
  it('revokes every session: refresh cookies and access tokens', async () => {
    const session = await registerSession(app.url)
    const otherDevice = await login(app.url, session)

    await requestReset(session.email)
    const { token } = await resetTokenFor(session.email)
    const confirmed = await confirmReset(token, 'the password after reset')

    expect(confirmed.status).toBe(204)
    expect((await refresh(app.url, session)).status).toBe(401)
    expect((await refresh(app.url, otherDevice)).status).toBe(401)
    expect((await me(app.url, session.accessToken)).status).toBe(401)
  })

  it('refuses an expired token', async () => {
    const session = await registerSession(app.url)
    await requestReset(session.email)
    const { token } = await resetTokenFor(session.email)
    await query(
      `UPDATE password_reset_tokens SET expires_at = now() - interval '1 second'
       WHERE token_hash = $1`,
      [createHash('sha256').update(token).digest()],
    )

    const response = await confirmReset(token, 'a password too late')

    expect(response.status).toBe(400)
    expect(await loginStatus(session.email, session.password)).toBe(200)
  })

  it('refuses a made-up token', async () => {
    const response = await confirmReset('x'.repeat(43), 'a password for nobody')

    expect(response.status).toBe(400)
  })
})

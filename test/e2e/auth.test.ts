import { decodeProtectedHeader } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { query } from '../../lib/db.ts'
import { startApp, type TestApp } from '../support/app.ts'
import { postJson, randomEmail, registerAndLogin } from '../support/http.ts'

let app: TestApp

beforeAll(async () => {
  app = await startApp({ worker: false })
})

afterAll(async () => {
  await app?.stop()
})

describe('POST /auth/register', () => {
  it('creates an account with the default quota and stores only an argon2id hash', async () => {
    const email = randomEmail()

    const response = await postJson(`${app.url}/auth/register`, {
      email,
      password: 'correct horse battery',
    })
    const account = (await response.json()) as {
      id: string
      email: string
      quota: object
    }
    const { rows } = await query<{ password_hash: string }>(
      'SELECT password_hash FROM users WHERE id = $1',
      [account.id],
    )

    expect(response.status).toBe(201)
    expect(account).toMatchObject({
      email,
      quota: { usedBytes: 0, totalBytes: 100 * 1024 * 1024 },
    })
    const [, algorithm, version, parameters] = rows[0]?.password_hash.split('$') ?? []
    expect([algorithm, version]).toEqual(['argon2id', 'v=19'])
    expect(parameters?.split(',').sort()).toEqual(['m=19456', 'p=1', 't=2'])
    expect(JSON.stringify(account)).not.toContain('argon2')
  })

  it('refuses an email that exists in another letter case with 409', async () => {
    const email = randomEmail()
    await postJson(`${app.url}/auth/register`, {
      email,
      password: 'correct horse battery',
    })

    const response = await postJson(`${app.url}/auth/register`, {
      email: email.toUpperCase(),
      password: 'another long password',
    })

    expect(response.status).toBe(409)
    expect(((await response.json()) as { code: string }).code).toBe('email_taken')
  })

  it.each([
    [{ email: 'not-an-email', password: 'correct horse battery' }, 'body.email'],
    [{ email: randomEmail(), password: 'short' }, 'body.password'],
    [{ email: randomEmail() }, 'body.password'],
    [
      { email: `a\u0000${randomEmail()}`, password: 'correct horse battery' },
      'body.email',
    ],
    [{ email: randomEmail(), password: 'x'.repeat(300) }, 'body.password'],
  ])('answers %j with 422 naming %s', async (body, field) => {
    const response = await postJson(`${app.url}/auth/register`, body)
    const problem = (await response.json()) as { errors: { field: string }[] }

    expect(response.status).toBe(422)
    expect(problem.errors.map((error) => error.field)).toContain(field)
  })

  it('answers a body that is not JSON with 400', async () => {
    const response = await fetch(`${app.url}/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"email":',
    })

    expect(response.status).toBe(400)
    expect(((await response.json()) as { code: string }).code).toBe('malformed_json')
  })
})

describe('POST /auth/login', () => {
  it('returns a short-lived HS256 token with a key id', async () => {
    const account = await registerAndLogin(app.url)

    const header = decodeProtectedHeader(account.token)

    expect(header.alg).toBe('HS256')
    expect(header.kid).toBeTruthy()
  })

  it('answers a wrong password and an unknown email the same way', async () => {
    const account = await registerAndLogin(app.url)

    const wrong = await postJson(`${app.url}/auth/login`, {
      email: account.email,
      password: 'not the password at all',
    })
    const unknown = await postJson(`${app.url}/auth/login`, {
      email: randomEmail(),
      password: 'not the password at all',
    })
    const wrongBody = (await wrong.json()) as Record<string, unknown>
    const unknownBody = (await unknown.json()) as Record<string, unknown>

    expect(wrong.status).toBe(401)
    expect(unknown.status).toBe(401)
    expect({ ...wrongBody, correlationId: 0 }).toEqual({
      ...unknownBody,
      correlationId: 0,
    })
  })

  it('refuses a disabled account', async () => {
    const account = await registerAndLogin(app.url)
    await query('UPDATE users SET disabled = true WHERE lower(email) = lower($1)', [
      account.email,
    ])

    const login = await postJson(`${app.url}/auth/login`, {
      email: account.email,
      password: account.password,
    })
    const meAfter = await fetch(`${app.url}/auth/me`, { headers: account.headers })

    expect(login.status).toBe(401)
    expect(meAfter.status).toBe(401)
  })
})

describe('GET /auth/me', () => {
  it('shows the account with quota used and total', async () => {
    const account = await registerAndLogin(app.url)

    const response = await fetch(`${app.url}/auth/me`, { headers: account.headers })

    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({
      email: account.email,
      role: 'user',
      quota: { usedBytes: 0, totalBytes: expect.any(Number) },
    })
  })

  it('answers concurrent requests of several accounts each with its own', async () => {
    const ada = await registerAndLogin(app.url)
    const bob = await registerAndLogin(app.url)
    const gone = await registerAndLogin(app.url)
    await query('UPDATE users SET disabled = true WHERE lower(email) = lower($1)', [
      gone.email,
    ])
    const callers = Array.from({ length: 30 }, (_, index) => [ada, bob, gone][index % 3])

    // Sent at once, their lookups meet in the same batches.
    const answers = await Promise.all(
      callers.map(async (caller) => {
        const response = await fetch(`${app.url}/auth/me`, { headers: caller?.headers })
        const body = (await response.json()) as { email?: string }
        return { caller: caller?.email, status: response.status, email: body.email }
      }),
    )

    for (const answer of answers) {
      if (answer.caller === gone.email) expect(answer.status).toBe(401)
      else expect([answer.status, answer.email]).toEqual([200, answer.caller])
    }
  })

  it.each([
    ['no header', undefined],
    ['another scheme', 'Basic dXNlcjpwYXNz'],
    [
      'a token signed with another key',
      'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl',
    ],
    ['an unsigned token', 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.'],
  ])('refuses %s with 401', async (_label, authorization) => {
    const headers: Record<string, string> = authorization ? { authorization } : {}

    const response = await fetch(`${app.url}/auth/me`, { headers })

    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe('Bearer')
  })
})

describe('GET /health', () => {
  it('answers without authentication', async () => {
    const response = await fetch(`${app.url}/health`)

    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ status: 'ok' })
    expect(response.headers.get('x-correlation-id')).toBeTruthy()
  })
})

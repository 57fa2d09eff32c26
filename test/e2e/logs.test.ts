import { randomUUID } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  corpusFile,
  postJson,
  randomClientIp,
  randomEmail,
  waitForFinal,
} from '../support/http.ts'
import { type ServiceProcess, startServiceProcess } from '../support/service-process.ts'

type Line = Record<string, unknown>

const ACCESS_FIELDS = [
  'correlation_id',
  'request_id',
  'function',
  'method',
  'route',
  'path',
  'status',
  'latency_ms',
  'client_ip',
  'level',
  'timestamp',
]

const TRACE = 'logs-e2e.trace_01'
const MALFORMED_TRACE = 'not a valid id!'
const COOKIE_SECRET = `cookie-${randomUUID()}`

let service: ServiceProcess
let lines: Line[]
const secrets: string[] = [COOKIE_SECRET]
const session = { userIds: new Map<string, string>() }

function bearer(token: string, ip: string, correlationId?: string) {
  return {
    authorization: `Bearer ${token}`,
    'x-forwarded-for': ip,
    ...(correlationId ? { 'x-correlation-id': correlationId } : {}),
  }
}

async function account(url: string) {
  const email = randomEmail()
  const password = `pw-${randomUUID()}`
  const ip = randomClientIp()
  await postJson(`${url}/auth/register`, { email, password }, { 'x-forwarded-for': ip })
  const login = await postJson(
    `${url}/auth/login`,
    { email, password },
    { 'x-forwarded-for': ip },
  )
  const { accessToken, csrfToken } = (await login.json()) as {
    accessToken: string
    csrfToken: string
  }
  const cookies = login.headers.getSetCookie().map((line) => line.split(';')[0] ?? '')
  secrets.push(csrfToken, ...cookies.map((pair) => pair.slice(pair.indexOf('=') + 1)))
  const me = await fetch(`${url}/auth/me`, { headers: bearer(accessToken, ip) })
  const { id } = (await me.json()) as { id: string }
  secrets.push(password, accessToken)
  return {
    email,
    password,
    ip,
    token: accessToken,
    id,
    csrfToken,
    cookie: cookies.join('; '),
  }
}

/** Refreshes a session, then resets its password through the mailed link. */
async function renewAndReset(url: string, who: Awaited<ReturnType<typeof account>>) {
  const refreshed = await fetch(`${url}/auth/refresh`, {
    method: 'POST',
    headers: {
      cookie: who.cookie,
      'x-csrf-token': who.csrfToken,
      'x-forwarded-for': who.ip,
    },
  })
  const renewed = (await refreshed.json()) as { accessToken: string }
  secrets.push(renewed.accessToken)
  for (const line of refreshed.headers.getSetCookie()) {
    const pair = line.split(';')[0] ?? ''
    secrets.push(pair.slice(pair.indexOf('=') + 1))
  }

  await postJson(`${url}/auth/password-reset/request`, { email: who.email })
  const token = await mailedResetToken(who.email)
  const password = `new-${randomUUID()}`
  secrets.push(token, password)
  await postJson(`${url}/auth/password-reset/confirm`, { token, password })
}

async function mailedResetToken(email: string): Promise<string> {
  const deadline = Date.now() + 20_000
  const dir = path.join(service.dataDir, 'mail')
  while (Date.now() < deadline) {
    const names = await readdir(dir).catch(() => [] as string[])
    for (const name of names.filter((file) => file.endsWith('.txt'))) {
      const text = await readFile(path.join(dir, name), 'utf8')
      const link = text.includes(email) ? text.match(/#token=([A-Za-z0-9_-]+)/) : null
      if (link?.[1]) return link[1]
    }
    await delay(100)
  }
  throw new Error(`no reset mail for ${email}`)
}

/** A whole session against the service, touching every kind of answer. */
async function exercise(url: string): Promise<Record<string, Response>> {
  const ada = await account(url)
  const bob = await account(url)
  const scan = await corpusFile('docs/testocr.png')
  secrets.push(Buffer.from(scan.bytes.subarray(0, 48)).toString('base64'))

  const form = new FormData()
  form.append('file', new Blob([scan.bytes]), 'testocr.png')
  const uploaded = await fetch(`${url}/documents`, {
    method: 'POST',
    headers: bearer(ada.token, ada.ip, TRACE),
    body: form,
  })
  const { id } = (await uploaded.json()) as { id: string }
  const headers = {
    ...bearer(ada.token, ada.ip),
    cookie: `theme=dark; session=${COOKIE_SECRET}`,
  }
  await waitForFinal(url, { headers } as never, id, 90_000)
  await fetch(`${url}/documents/${id}/text`, { headers })
  await fetch(`${url}/documents/${id}/content`, { headers })
  await fetch(`${url}/documents/${id}`, { method: 'DELETE', headers })

  const malformed = await fetch(`${url}/auth/me`, {
    headers: bearer(ada.token, ada.ip, MALFORMED_TRACE),
  })
  await fetch(`${url}/nowhere`)
  await fetch(`${url}/auth/me`, {
    headers: { authorization: 'Bearer forged.token.value' },
  })
  await fetch(`${url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': ada.ip },
    body: `{"email":"${ada.email}","password":"${ada.password}"`,
  })
  const guesses = randomClientIp()
  let limited: Response | undefined
  for (let attempt = 0; attempt < 11; attempt++) {
    limited = await postJson(
      `${url}/auth/login`,
      { email: ada.email, password: 'wrong password guess' },
      { 'x-forwarded-for': guesses },
    )
  }

  await renewAndReset(url, await account(url))

  session.userIds.set('ada', ada.id)
  session.userIds.set('bob', bob.id)
  await Promise.all(
    Array.from({ length: 30 }, (_, index) => {
      const who = (['ada', 'bob', 'nobody'] as const)[index % 3]
      const caller = who === 'ada' ? ada : bob
      const headers: Record<string, string> =
        who === 'nobody'
          ? { 'x-correlation-id': `interleaved-${index}-nobody` }
          : bearer(caller.token, caller.ip, `interleaved-${index}-${who}`)
      return fetch(`${url}/auth/me`, { headers })
    }),
  )

  return { uploaded, malformed, limited: limited as Response }
}

let responses: Record<string, Response>

beforeAll(async () => {
  service = await startServiceProcess({ LOG_LEVEL: 'DEBUG' })
  responses = await exercise(service.url)
  const code = await service.stop('SIGTERM')
  expect(code).toBe(0)
  lines = service.stdout.map((text) => JSON.parse(text) as Line)
}, 170_000)

afterAll(async () => {
  await service?.stop('SIGKILL')
})

function accessLines(): Line[] {
  return lines.filter(
    (line) => line.message === 'request' || line.message === 'request finished',
  )
}

describe('the logs of a whole session', () => {
  it('are one JSON object per line, each with level, timestamp, message and function', () => {
    expect(service.stdout.length).toBeGreaterThan(50)
    for (const line of lines) {
      expect(line).toEqual(
        expect.objectContaining({
          level: expect.any(String),
          timestamp: expect.any(String),
          message: expect.any(String),
          function: expect.any(String),
        }),
      )
    }
  })

  it('end every request with an access line carrying the fields dashboards query', () => {
    // The gateway's line names the function it invoked as `target`.
    const access = accessLines()

    const gateway = access.filter((line) => line.function === 'gateway')
    expect(gateway.length).toBeGreaterThan(40)
    expect(
      gateway.some((line) => line.status === 404 && line.route === 'unmatched'),
    ).toBe(true)
    for (const line of access) {
      for (const field of ACCESS_FIELDS)
        expect(line, JSON.stringify(line)).toHaveProperty(field)
    }
    const me = access.filter((line) => line.function === 'auth-me' && line.status === 200)
    expect(me.length).toBeGreaterThan(0)
    for (const line of me) expect(line.user_id).toEqual(expect.any(String))
  })

  it("follow a client's correlation id through gateway, function and worker", () => {
    const traced = lines.filter((line) => line.correlation_id === TRACE)

    expect(responses.uploaded?.headers.get('x-correlation-id')).toBe(TRACE)
    expect(new Set(traced.map((line) => line.function))).toEqual(
      new Set(['gateway', 'documents-create', 'jobs-extract']),
    )
  })

  it('replace a malformed correlation id with a new one', () => {
    const echoed = responses.malformed?.headers.get('x-correlation-id')

    expect(echoed).toMatch(/^[0-9a-f-]{36}$/)
    expect(service.stdout.join('\n')).not.toContain(MALFORMED_TRACE)
    expect(lines.some((line) => line.correlation_id === echoed)).toBe(true)
  })

  it('keep no key of one request in the lines of another', () => {
    const functionLines = accessLines().filter(
      (line) =>
        line.function === 'auth-me' &&
        String(line.correlation_id).startsWith('interleaved-'),
    )

    expect(functionLines).toHaveLength(30)
    for (const line of functionLines) {
      const who = String(line.correlation_id).split('-').at(-1) as string
      if (who === 'nobody') expect(line).not.toHaveProperty('user_id')
      else expect(line.user_id).toBe(session.userIds.get(who))
    }
  })

  it('log a refused request at info and the rate limit refusal as a 429', () => {
    const refused = accessLines().filter((line) => line.status === 429)

    expect(responses.limited?.status).toBe(429)
    expect(refused.length).toBeGreaterThan(0)
    for (const line of refused) expect(line.level).toBe('INFO')
  })

  it('never contain a password, token, cookie or file content', () => {
    const everything = [...service.stdout, ...service.stderr].join('\n')

    // Passwords, access, refresh, CSRF and reset tokens, cookies, the file's first bytes.
    expect(secrets.length).toBeGreaterThan(12)
    for (const secret of secrets) expect(everything).not.toContain(secret)
    expect(everything.toLowerCase()).not.toContain('bearer ')
    expect(everything.toLowerCase()).not.toContain('quick brown dog')
  })
})

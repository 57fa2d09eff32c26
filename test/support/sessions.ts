import { randomUUID } from 'node:crypto'
import { postJson, randomClientIp, randomEmail } from './http.ts'

export type SetCookie = { name: string; value: string; attributes: Map<string, string> }

/** Every Set-Cookie of a response, by cookie name, attribute names lower-cased. */
export function setCookies(response: Response): Map<string, SetCookie> {
  const cookies = new Map<string, SetCookie>()
  for (const line of response.headers.getSetCookie()) {
    const [pair = '', ...rest] = line.split(';').map((part) => part.trim())
    const equals = pair.indexOf('=')
    const attributes = new Map<string, string>()
    for (const item of rest) {
      const [key = '', value = ''] = item.split('=')
      attributes.set(key.toLowerCase(), value)
    }
    const name = pair.slice(0, equals)
    cookies.set(name, { name, value: pair.slice(equals + 1), attributes })
  }
  return cookies
}

/** A browser's view of one login: its cookies, CSRF token, access token and address. */
export type BrowserSession = {
  email: string
  password: string
  ip: string
  accessToken: string
  csrfToken: string
  refreshToken: string
  csrfCookie: string
}

function expectCookie(cookies: Map<string, SetCookie>, name: string): string {
  const value = cookies.get(name)?.value
  if (!value) throw new Error(`the response set no ${name} cookie`)
  return value
}

/** Takes the new tokens of a login or refresh answer into the session. */
export async function absorb(
  session: Omit<
    BrowserSession,
    'accessToken' | 'csrfToken' | 'refreshToken' | 'csrfCookie'
  >,
  response: Response,
): Promise<BrowserSession> {
  if (response.status !== 200)
    throw new Error(`expected 200, got ${response.status}: ${await response.text()}`)
  const body = (await response.json()) as { accessToken: string; csrfToken: string }
  const cookies = setCookies(response)
  return {
    ...session,
    accessToken: body.accessToken,
    csrfToken: body.csrfToken,
    refreshToken: expectCookie(cookies, '__Host-refresh'),
    csrfCookie: expectCookie(cookies, '__Host-csrf'),
  }
}

export async function login(
  baseUrl: string,
  credentials: { email: string; password: string },
  ip = randomClientIp(),
): Promise<BrowserSession> {
  const response = await postJson(`${baseUrl}/auth/login`, credentials, {
    'x-forwarded-for': ip,
  })
  return absorb({ ...credentials, ip }, response)
}

/** Registers a fresh account and logs it in as a browser would. */
export async function registerSession(baseUrl: string): Promise<BrowserSession> {
  const credentials = { email: randomEmail(), password: `pw-${randomUUID()}` }
  const ip = randomClientIp()
  const registered = await postJson(`${baseUrl}/auth/register`, credentials, {
    'x-forwarded-for': ip,
  })
  if (registered.status !== 201) throw new Error(`register: ${registered.status}`)
  return login(baseUrl, credentials, ip)
}

/** The headers a same-origin page sends with a cookie-authenticated POST. */
export function browserHeaders(
  session: BrowserSession,
  overrides: Record<string, string | undefined> = {},
): Record<string, string> {
  const headers: Record<string, string | undefined> = {
    cookie: `__Host-refresh=${session.refreshToken}; __Host-csrf=${session.csrfCookie}`,
    'x-csrf-token': session.csrfToken,
    'x-forwarded-for': session.ip,
    ...overrides,
  }
  return Object.fromEntries(
    Object.entries(headers).filter((entry): entry is [string, string] => !!entry[1]),
  )
}

export function refresh(
  baseUrl: string,
  session: BrowserSession,
  overrides: Record<string, string | undefined> = {},
): Promise<Response> {
  return fetch(`${baseUrl}/auth/refresh`, {
    method: 'POST',
    headers: browserHeaders(session, overrides),
  })
}

export function me(baseUrl: string, accessToken: string): Promise<Response> {
  return fetch(`${baseUrl}/auth/me`, {
    headers: { authorization: `Bearer ${accessToken}` },
  })
}

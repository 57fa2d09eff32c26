import { randomBytes, randomUUID } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { resetConfig } from '../../../lib/config.ts'
import type { ApiEvent } from '../../../lib/http.ts'
import {
  allowedOrigins,
  clearedSessionCookies,
  csrfToken,
  readCookie,
  safeEqual,
  sessionCookies,
  verifyCsrfToken,
} from '../../../lib/sessions.ts'

function session() {
  return { id: randomUUID(), csrfKey: randomBytes(32) }
}

describe('CSRF tokens', () => {
  it('verify for the session they were made for', () => {
    const owner = session()

    expect(verifyCsrfToken(owner, csrfToken(owner))).toBe(true)
  })

  it('do not verify for another session, even with the same key', () => {
    const owner = session()
    const other = { ...session(), csrfKey: owner.csrfKey }

    expect(verifyCsrfToken(other, csrfToken(owner))).toBe(false)
  })

  it.each([
    ['empty', ''],
    ['no signature', 'abc'],
    ['three parts', 'a.b.c'],
    ['a changed nonce', 'NONCE'],
  ])('refuse a token that is %s', (_label, token) => {
    const owner = session()
    const real = csrfToken(owner)
    const candidate = token === 'NONCE' ? `x${real}` : token

    expect(verifyCsrfToken(owner, candidate)).toBe(false)
  })
})

describe('safeEqual', () => {
  it('compares strings of any length', () => {
    expect(safeEqual('abc', 'abc')).toBe(true)
    expect(safeEqual('abc', 'abd')).toBe(false)
    expect(safeEqual('abc', 'abcd')).toBe(false)
  })
})

describe('cookies', () => {
  it('reads a cookie from the event, the first when a name repeats', () => {
    const event = {
      cookies: ['a=1', '__Host-refresh=token-one', '__Host-refresh=token-two'],
    } as ApiEvent

    expect(readCookie(event, '__Host-refresh')).toBe('token-one')
    expect(readCookie(event, 'missing')).toBeUndefined()
    expect(readCookie({} as ApiEvent, 'a')).toBeUndefined()
  })

  it('writes the refresh cookie HttpOnly and the CSRF cookie readable', () => {
    const [refresh, csrf] = sessionCookies({
      sessionId: randomUUID(),
      userId: randomUUID(),
      refreshToken: 'r',
      csrfToken: 'c',
      maxAgeSeconds: 60,
    })

    expect(refresh).toBe(
      '__Host-refresh=r; Path=/; Max-Age=60; Secure; SameSite=Strict; HttpOnly',
    )
    expect(csrf).toBe('__Host-csrf=c; Path=/; Max-Age=60; Secure; SameSite=Strict')
    expect(clearedSessionCookies().every((cookie) => cookie.includes('Max-Age=0'))).toBe(
      true,
    )
  })
})

describe('allowed origins', () => {
  const saved = { ...process.env }

  function useEnv(env: Record<string, string | undefined>): void {
    for (const name of ['ALLOWED_ORIGINS', 'PUBLIC_BASE_URL', 'PORT']) {
      const value = env[name]
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
    resetConfig()
  }

  afterEach(() => useEnv(saved))

  it('are the configured list when there is one', () => {
    useEnv({ ALLOWED_ORIGINS: 'https://a.test, https://b.test:8443/' })

    expect(allowedOrigins()).toEqual(['https://a.test', 'https://b.test:8443'])
  })

  it('default to the origin of PUBLIC_BASE_URL', () => {
    useEnv({ PUBLIC_BASE_URL: 'https://docs.example.test/app/' })

    expect(allowedOrigins()).toEqual(['https://docs.example.test'])
  })

  it('default to the local gateway under its loopback names', () => {
    useEnv({ PORT: '8123' })

    expect(allowedOrigins()).toEqual([
      'http://localhost:8123',
      'http://127.0.0.1:8123',
      'http://[::1]:8123',
    ])
  })
})

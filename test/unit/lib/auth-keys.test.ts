import { randomBytes } from 'node:crypto'
import { SignJWT } from 'jose'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  shorthandKid,
  signAccessToken,
  signingKeys,
  tokenKid,
  verifyAccessToken,
} from '../../../lib/auth.ts'
import { ConfigError, parseConfig, resetConfig } from '../../../lib/config.ts'

vi.hoisted(() => {
  process.env.LOG_LEVEL = 'SILENT'
})

const OLD = randomBytes(48).toString('base64url')
const NEW = randomBytes(48).toString('base64url')
const CLAIMS = {
  userId: '6f1c1a52-8f7e-4a55-9d59-0b7a0f0c2b11',
  role: 'user',
  version: 3,
}
const saved = { JWT_SECRET: process.env.JWT_SECRET, KEYS: process.env.JWT_SIGNING_KEYS }

function useKeys(keys: { JWT_SECRET?: string; JWT_SIGNING_KEYS?: string }): void {
  delete process.env.JWT_SECRET
  delete process.env.JWT_SIGNING_KEYS
  Object.assign(process.env, keys)
  resetConfig()
}

afterEach(() => {
  useKeys({
    ...(saved.JWT_SECRET ? { JWT_SECRET: saved.JWT_SECRET } : {}),
    ...(saved.KEYS ? { JWT_SIGNING_KEYS: saved.KEYS } : {}),
  })
})

/** A token of the service's shape, signed with NEW, with these claims and header. */
function signedWithNew(
  claims: Record<string, unknown>,
  header: { alg: string; kid?: string; typ?: string },
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ typ: 'JWT', ...header })
    .setSubject(CLAIMS.userId)
    .setIssuer('docservice')
    .setAudience('docservice-api')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(NEW))
}

function minutesFromNow(minutes: number): Date {
  return new Date(Date.now() + minutes * 60_000)
}

describe('access-token keys', () => {
  it('signs with the first listed key and names it in kid', async () => {
    useKeys({ JWT_SIGNING_KEYS: `new=${NEW}, old=${OLD}` })

    const { token } = await signAccessToken(CLAIMS)

    expect(tokenKid(token)).toBe('new')
    expect(await verifyAccessToken(token)).toEqual(CLAIMS)
  })

  it('keeps a token of a verify-only key valid until it expires, then refuses it', async () => {
    useKeys({ JWT_SIGNING_KEYS: `old=${OLD}` })
    const { token } = await signAccessToken(CLAIMS)
    useKeys({ JWT_SIGNING_KEYS: `new=${NEW}, old=${OLD}` })

    const beforeExpiry = await verifyAccessToken(token, { now: minutesFromNow(14) })
    const afterExpiry = await verifyAccessToken(token, { now: minutesFromNow(16) })

    expect(beforeExpiry).toEqual(CLAIMS)
    expect(afterExpiry).toBeUndefined()
  })

  it('refuses a token whose key was removed from the list', async () => {
    useKeys({ JWT_SIGNING_KEYS: `old=${OLD}` })
    const { token } = await signAccessToken(CLAIMS)
    useKeys({ JWT_SIGNING_KEYS: `new=${NEW}` })

    expect(await verifyAccessToken(token)).toBeUndefined()
  })

  it('refuses a token it verified before once its key is removed', async () => {
    useKeys({ JWT_SIGNING_KEYS: `old=${OLD}` })
    const { token } = await signAccessToken(CLAIMS)
    const before = await verifyAccessToken(token)

    useKeys({ JWT_SIGNING_KEYS: `new=${NEW}` })

    expect(before).toEqual(CLAIMS)
    expect(await verifyAccessToken(token)).toBeUndefined()
  })

  it('refuses a token it verified before once it has expired', async () => {
    useKeys({ JWT_SIGNING_KEYS: `new=${NEW}` })
    const { token } = await signAccessToken(CLAIMS)

    const fresh = await verifyAccessToken(token)
    const expired = await verifyAccessToken(token, { now: minutesFromNow(15) })

    expect(fresh).toEqual(CLAIMS)
    expect(expired).toBeUndefined()
  })

  it('keeps JWT_SECRET as a verify-only key next to a list, under its derived kid', async () => {
    useKeys({ JWT_SECRET: OLD })
    const { token } = await signAccessToken(CLAIMS)
    useKeys({ JWT_SECRET: OLD, JWT_SIGNING_KEYS: `new=${NEW}` })

    const fresh = await signAccessToken(CLAIMS)

    expect(tokenKid(token)).toBe(shorthandKid(OLD))
    expect(signingKeys().map((key) => key.kid)).toEqual(['new', shorthandKid(OLD)])
    expect(await verifyAccessToken(token)).toEqual(CLAIMS)
    expect(tokenKid(fresh.token)).toBe('new')
  })

  it.each([
    ['a fraction', 1.5],
    ['a negative number', -1],
    ['a number past PostgreSQL integers', 2 ** 31],
    ['a string', '3'],
  ])('refuses a session generation that is %s', async (_label, ver) => {
    useKeys({ JWT_SIGNING_KEYS: `new=${NEW}` })
    const token = await signedWithNew({ role: 'user', ver }, { alg: 'HS256', kid: 'new' })

    expect(await verifyAccessToken(token)).toBeUndefined()
  })

  it.each([
    ['no kid', { alg: 'HS256', typ: 'JWT' }, 'HS256'],
    ['an unknown kid', { alg: 'HS256', typ: 'JWT', kid: 'other' }, 'HS256'],
    [
      'another algorithm with the right key',
      { alg: 'HS512', typ: 'JWT', kid: 'new' },
      'HS512',
    ],
  ])('refuses a token with %s', async (_label, header, algorithm) => {
    useKeys({ JWT_SIGNING_KEYS: `new=${NEW}` })
    const token = await signedWithNew({ role: 'admin' }, { ...header, alg: algorithm })

    expect(await verifyAccessToken(token)).toBeUndefined()
  })
})

describe('signing key configuration', () => {
  it.each([
    ['a short secret', 'k1=tooshort'],
    ['a missing key id', `=${NEW}`],
    ['a key id twice', `k1=${NEW},k1=${OLD}`],
    ['a key id with a space', `k 1=${NEW}`],
  ])('refuses %s', (_label, value) => {
    expect(() => parseConfig({ JWT_SIGNING_KEYS: value })).toThrow(ConfigError)
  })

  it('needs JWT_SECRET or JWT_SIGNING_KEYS', () => {
    expect(() => parseConfig({})).toThrow(
      /JWT_SECRET: set JWT_SECRET or JWT_SIGNING_KEYS/,
    )
  })

  it('reads a list of kid=secret pairs, secrets may hold "="', () => {
    const config = parseConfig({ JWT_SIGNING_KEYS: ` a=${NEW}==, b=${OLD} ` })

    expect(config.JWT_SIGNING_KEYS).toEqual([
      { kid: 'a', secret: `${NEW}==` },
      { kid: 'b', secret: OLD },
    ])
  })

  it('refuses an allowed origin that is not an origin', () => {
    expect(() =>
      parseConfig({ JWT_SECRET: OLD, ALLOWED_ORIGINS: 'https://app.test/path' }),
    ).toThrow(/ALLOWED_ORIGINS/)
  })
})

import { createHash } from 'node:crypto'
import argon2 from 'argon2'
import {
  decodeProtectedHeader,
  type JWTHeaderParameters,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
} from 'jose'
import { type Config, getConfig } from './config.ts'

// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB of memory, 2 iterations, 1 lane.
const ARGON2_OPTIONS = {
  type: argon2.argon2id,
  memoryCost: 19 * 1024,
  timeCost: 2,
  parallelism: 1,
} as const

const ALGORITHM = 'HS256'
const AUDIENCE = 'docservice-api'

export type AccessClaims = {
  userId: string
  role: string
  /** The account's session generation (users.token_version): older ones are refused. */
  version?: number
}

export type SigningKey = { kid: string; key: Uint8Array }

export function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, ARGON2_OPTIONS)
}

let dummyHash: Promise<string> | undefined

/**
 * Verifies a password against a stored hash. With no hash (unknown account) it still
 * spends the same work on a throwaway hash, so timing does not reveal which emails exist.
 */
export async function verifyPassword(
  hash: string | undefined,
  password: string,
): Promise<boolean> {
  if (!hash) {
    dummyHash ??= hashPassword('not-a-real-password-just-equal-work')
    await argon2.verify(await dummyHash, password).catch(() => false)
    return false
  }
  return argon2.verify(hash, password).catch(() => false)
}

/** The key id of the JWT_SECRET shorthand: derived, so it names the secret without it. */
export function shorthandKid(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url').slice(0, 16)
}

/**
 * The access-token keys, signing key first. JWT_SIGNING_KEYS lists them as kid=secret;
 * JWT_SECRET alone is a one-key ring, and next to the list it stays as a verify-only
 * key, so moving from the shorthand to a list keeps every issued token valid.
 */
export function signingKeys(config: Config = getConfig()): SigningKey[] {
  const entries = [...(config.JWT_SIGNING_KEYS ?? [])]
  const shorthand = config.JWT_SECRET
  if (shorthand && !entries.some((entry) => entry.secret === shorthand))
    entries.push({ kid: shorthandKid(shorthand), secret: shorthand })
  return entries.map(({ kid, secret }) => ({
    kid,
    key: new TextEncoder().encode(secret),
  }))
}

export async function signAccessToken(
  claims: AccessClaims,
  options: { now?: Date } = {},
): Promise<{ token: string; expiresIn: number }> {
  const config = getConfig()
  const [current] = signingKeys(config)
  if (!current) throw new Error('no access-token signing key is configured')
  const issuedAt = Math.floor((options.now ?? new Date()).getTime() / 1000)

  const token = await new SignJWT({ role: claims.role, ver: claims.version ?? 0 })
    .setProtectedHeader({ alg: ALGORITHM, kid: current.kid, typ: 'JWT' })
    .setSubject(claims.userId)
    .setIssuer(config.JWT_ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + config.ACCESS_TOKEN_TTL_SECONDS)
    .sign(current.key)
  return { token, expiresIn: config.ACCESS_TOKEN_TTL_SECONDS }
}

// Only the algorithm and the keys of this service: a token naming another algorithm,
// no key id or an unknown one is refused before any signature is computed.
function keyFor(header: JWTHeaderParameters): Uint8Array {
  const match = signingKeys().find((candidate) => candidate.kid === header.kid)
  if (header.alg !== ALGORITHM || !match) throw new joseErrors.JWKSNoMatchingKey()
  return match.key
}

/** Verifies an access token; `undefined` for anything not valid, expired or forged. */
export async function verifyAccessToken(
  token: string,
  options: { now?: Date } = {},
): Promise<AccessClaims | undefined> {
  try {
    const { payload } = await jwtVerify(token, keyFor, {
      algorithms: [ALGORITHM],
      issuer: getConfig().JWT_ISSUER,
      audience: AUDIENCE,
      typ: 'JWT',
      requiredClaims: ['exp', 'iat', 'sub'],
      ...(options.now ? { currentDate: options.now } : {}),
    })
    if (typeof payload.sub !== 'string') return undefined
    const version = typeof payload.ver === 'number' ? payload.ver : 0
    return { userId: payload.sub, role: String(payload.role ?? 'user'), version }
  } catch (error) {
    if (error instanceof joseErrors.JOSEError || error instanceof TypeError)
      return undefined
    throw error
  }
}

/** The key id a token names, for logs and tests; undefined when it names none. */
export function tokenKid(token: string): string | undefined {
  try {
    return decodeProtectedHeader(token).kid
  } catch {
    return undefined
  }
}

import { createHash } from 'node:crypto'
import argon2 from 'argon2'
import {
  decodeProtectedHeader,
  type JWTHeaderParameters,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
} from 'jose'
import { LRUCache } from 'lru-cache'
import { type Config, getConfig } from './config.ts'

// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB of memory, 2 iterations, 1 lane.
const ARGON2_OPTIONS = {
  type: argon2.argon2id,
  memoryCost: 19 * 1024,
  timeCost: 2,
  parallelism: 1,
} as const

const ALGORITHM = 'HS256'
// PostgreSQL's integer.
const MAX_INT = 2_147_483_647
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
  const [current] = verifier(config).keys
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
  const match = verifier().keys.find((candidate) => candidate.kid === header.kid)
  if (header.alg !== ALGORITHM || !match) throw new joseErrors.JWKSNoMatchingKey()
  return match.key
}

type Verified = AccessClaims & { expiresAt: number; notBefore?: number }

// Verifying a signature costs about 100 µs through WebCrypto, more than the rest of an
// authenticated request's own work; a client sends the same token until it expires.
// Only tokens that verified are kept, each until its expiry, so a hit is checked
// against the clock and nothing else. The cache belongs to one configuration: new keys
// (tests, a restart after rotation) start an empty one.
const VERIFIED_TOKENS = 10_000

type Verifier = { keys: SigningKey[]; verified: LRUCache<string, Verified> }

const verifiers = new WeakMap<Config, Verifier>()

function verifier(config: Config = getConfig()): Verifier {
  let current = verifiers.get(config)
  if (!current) {
    current = {
      keys: signingKeys(config),
      verified: new LRUCache({ max: VERIFIED_TOKENS }),
    }
    verifiers.set(config, current)
  }
  return current
}

/** Verifies an access token; `undefined` for anything not valid, expired or forged. */
export async function verifyAccessToken(
  token: string,
  options: { now?: Date } = {},
): Promise<AccessClaims | undefined> {
  const { verified } = verifier()
  const seconds = Math.floor((options.now ?? new Date()).getTime() / 1000)
  const known = verified.get(token)
  if (known) {
    // The checks jose makes of a token's times, with its default of no tolerance.
    if (known.expiresAt <= seconds || (known.notBefore ?? seconds) > seconds)
      return undefined
    return claimsOf(known)
  }

  const checked = await verifySignedToken(token, options.now)
  if (!checked) return undefined
  verified.set(token, checked)
  return claimsOf(checked)
}

function claimsOf({ userId, role, version }: Verified): AccessClaims {
  return { userId, role, version }
}

async function verifySignedToken(
  token: string,
  now: Date | undefined,
): Promise<Verified | undefined> {
  try {
    const { payload } = await jwtVerify(token, keyFor, {
      algorithms: [ALGORITHM],
      issuer: getConfig().JWT_ISSUER,
      audience: AUDIENCE,
      typ: 'JWT',
      requiredClaims: ['exp', 'iat', 'sub'],
      ...(now ? { currentDate: now } : {}),
    })
    if (typeof payload.sub !== 'string') return undefined
    // The session generation (users.token_version, an integer column); tokens from
    // before it have none. Anything else never came from this service.
    const version = payload.ver ?? 0
    if (
      !Number.isInteger(version) ||
      (version as number) < 0 ||
      (version as number) > MAX_INT
    )
      return undefined
    return {
      userId: payload.sub,
      role: String(payload.role ?? 'user'),
      version: version as number,
      expiresAt: payload.exp as number,
      notBefore: payload.nbf,
    }
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

import { createHash } from 'node:crypto'
import argon2 from 'argon2'
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose'
import { getConfig } from './config.ts'

// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB of memory, 2 iterations, 1 lane.
const ARGON2_OPTIONS = {
  type: argon2.argon2id,
  memoryCost: 19 * 1024,
  timeCost: 2,
  parallelism: 1,
} as const

const ALGORITHM = 'HS256'
const AUDIENCE = 'docservice-api'

export type AccessClaims = { userId: string; role: string }

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

function signingKey(): { key: Uint8Array; kid: string } {
  const secret = getConfig().JWT_SECRET
  const kid = createHash('sha256').update(secret).digest('base64url').slice(0, 16)
  return { key: new TextEncoder().encode(secret), kid }
}

export async function signAccessToken(
  claims: AccessClaims,
): Promise<{ token: string; expiresIn: number }> {
  const config = getConfig()
  const { key, kid } = signingKey()
  const token = await new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: ALGORITHM, kid, typ: 'JWT' })
    .setSubject(claims.userId)
    .setIssuer(config.JWT_ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${config.ACCESS_TOKEN_TTL_SECONDS}s`)
    .sign(key)
  return { token, expiresIn: config.ACCESS_TOKEN_TTL_SECONDS }
}

/** Verifies an access token; `undefined` for anything not valid, expired or forged. */
export async function verifyAccessToken(
  token: string,
): Promise<AccessClaims | undefined> {
  try {
    const { payload } = await jwtVerify(token, signingKey().key, {
      algorithms: [ALGORITHM],
      issuer: getConfig().JWT_ISSUER,
      audience: AUDIENCE,
    })
    if (typeof payload.sub !== 'string') return undefined
    return { userId: payload.sub, role: String(payload.role ?? 'user') }
  } catch (error) {
    if (error instanceof joseErrors.JOSEError || error instanceof TypeError)
      return undefined
    throw error
  }
}

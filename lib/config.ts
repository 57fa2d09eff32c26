import os from 'node:os'
import { z } from 'zod'
import { parseTrustedProxies } from './client-ip.ts'

const MIB = 1024 * 1024

const booleanFromText = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1')

const positiveInt = z.coerce.number().int().positive()

// "none" trusts no proxy: every peer is the client (an empty value means the default).
const trustedProxies = z.string().transform((text, context) => {
  try {
    return text.trim() === 'none' ? [] : parseTrustedProxies(text)
  } catch (error) {
    context.addIssue({ code: 'custom', message: (error as Error).message })
    return z.NEVER
  }
})

// A rate-limit policy as "<requests>/<window seconds>", e.g. "10/60". Six digits at
// most each, so the bucket arithmetic (lib/rate-limit.ts) stays inside a bigint.
const ratePolicy = z
  .string()
  .regex(/^[1-9][0-9]{0,5}\/[1-9][0-9]{0,5}$/, 'must be <requests>/<window seconds>')
  .transform((text) => {
    const [quota, windowSeconds] = text.split('/').map(Number) as [number, number]
    return { quota, windowSeconds }
  })

// Access-token keys as "kid=secret" pairs, comma-separated: the first signs, the others
// only verify (lib/auth.ts).
const signingKeys = z.string().transform((text, context) => {
  const keys = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .map((item) => {
      const equals = item.indexOf('=')
      return { kid: item.slice(0, Math.max(equals, 0)), secret: item.slice(equals + 1) }
    })
  for (const { kid, secret } of keys) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(kid))
      context.addIssue({ code: 'custom', message: `"${kid}" is not a key id` })
    if (secret.length < 32)
      context.addIssue({ code: 'custom', message: `key ${kid}: at least 32 characters` })
  }
  if (new Set(keys.map((key) => key.kid)).size !== keys.length)
    context.addIssue({ code: 'custom', message: 'a key id appears twice' })
  return keys
})

// Browser origins allowed on the cookie-authenticated endpoints, comma-separated.
const origins = z.string().transform((text, context) =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .map((item) => {
      const parsed = URL.canParse(item) ? new URL(item) : undefined
      if (!parsed || parsed.origin !== item.replace(/\/$/, ''))
        context.addIssue({ code: 'custom', message: `"${item}" is not an origin` })
      return parsed?.origin ?? item
    }),
)

/**
 * Every environment variable the service reads, with its default. RUNBOOK.md's
 * variable table mirrors this schema.
 */
export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR', 'SILENT']).default('INFO'),

  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  DATA_DIR: z.string().min(1).default('.data'),
  INVOKE_MODE: z.enum(['in-process', 'rie']).default('in-process'),
  RIE_ENDPOINTS: z.string().default(''),
  // Each RIE runs one invocation at a time: the gateway queues the rest per endpoint for
  // at most RIE_QUEUE_TIMEOUT_MS, then answers 503.
  RIE_CONCURRENCY: positiveInt.default(1),
  RIE_QUEUE_TIMEOUT_MS: positiveInt.default(5_000),
  GATEWAY_MAX_BODY_BYTES: positiveInt.default(10 * MIB),
  TRUSTED_PROXIES: trustedProxies.prefault(
    '127.0.0.0/8, ::1/128, 172.16.0.0/12, 192.168.0.0/16',
  ),

  RATE_LIMIT_LOGIN: ratePolicy.prefault('10/60'),
  RATE_LIMIT_REGISTER: ratePolicy.prefault('10/60'),
  RATE_LIMIT_PASSWORD_RESET: ratePolicy.prefault('5/3600'),
  RATE_LIMIT_REFRESH: ratePolicy.prefault('30/60'),
  RATE_LIMIT_DOCUMENTS: ratePolicy.prefault('100/60'),
  RATE_LIMIT_IP_CEILING: ratePolicy.prefault('600/60'),

  DATABASE_URL: z.string().url().optional(),
  DATABASE_POOL_MAX: positiveInt.default(10),

  S3_ENDPOINT: z.string().url().optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_BUCKET: z.string().min(3).default('documents'),
  S3_ACCESS_KEY_ID: z.string().min(1).default('S3RVER'),
  S3_SECRET_ACCESS_KEY: z.string().min(1).default('S3RVER'),
  S3_FORCE_PATH_STYLE: booleanFromText.default(true),

  // One of the two is required: JWT_SECRET is the single-key shorthand.
  JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  JWT_SIGNING_KEYS: signingKeys.optional(),
  JWT_ISSUER: z.string().min(1).default('docservice'),
  ACCESS_TOKEN_TTL_SECONDS: positiveInt.default(900),
  // Sessions (lib/sessions.ts): idle lifetime of a refresh token, absolute lifetime of a
  // session, and how long a spent refresh token may still be presented (two tabs).
  REFRESH_TOKEN_TTL_SECONDS: positiveInt.default(7 * 24 * 3600),
  SESSION_MAX_SECONDS: positiveInt.default(30 * 24 * 3600),
  REFRESH_REUSE_GRACE_SECONDS: z.coerce.number().int().min(0).max(60).default(10),
  ALLOWED_ORIGINS: origins.prefault(''),
  // Where links in mails point; by default the local gateway (http://localhost:PORT).
  PUBLIC_BASE_URL: z.string().url().optional(),
  // Unset: npm start runs a local mail catcher; elsewhere mail is not sent (logged).
  SMTP_URL: z.string().url().optional(),
  MAIL_FROM: z.string().min(3).default('docservice <no-reply@localhost>'),
  PASSWORD_RESET_TTL_SECONDS: positiveInt.default(30 * 60),
  // Reset requests answer no sooner than this, so known and unknown emails take alike.
  PASSWORD_RESET_MIN_RESPONSE_MS: z.coerce.number().int().min(0).default(400),

  // The largest file whose base64 form, with the event around it, still fits a
  // 6 MB synchronous Lambda invocation: the same limit holds in containers.
  UPLOAD_MAX_BYTES: positiveInt.default(Math.floor(4.4 * MIB)),
  DEFAULT_QUOTA_BYTES: positiveInt.default(100 * MIB),

  WORKER_CONCURRENCY: positiveInt.default(Math.max(1, os.availableParallelism() - 1)),
  OCR_WORKERS: positiveInt.default(Math.max(1, os.availableParallelism() - 1)),
  EXTRACT_MAX_PAGES: positiveInt.default(200),
  EXTRACT_MAX_PIXELS: positiveInt.default(50_000_000),
  EXTRACT_TIMEOUT_MS: positiveInt.default(120_000),
  EXTRACT_MAX_ATTEMPTS: positiveInt.default(3),
  EXTRACT_RETRY_DELAY_SECONDS: positiveInt.default(5),
  // A job whose worker stops sending heartbeats for this long (killed, hung) is retried.
  EXTRACT_HEARTBEAT_SECONDS: z.coerce.number().int().min(10).default(30),
  // How often the queue's supervisor fails expired jobs and refreshes its statistics.
  QUEUE_SUPERVISE_SECONDS: positiveInt.default(30),
})

export type Config = z.infer<typeof configSchema>

export class ConfigError extends Error {
  constructor(issues: string[]) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`)
    this.name = 'ConfigError'
  }
}

/** Validates an environment; the error names every variable that is wrong. */
export function parseConfig(env: NodeJS.ProcessEnv): Config {
  const config = parseEnv(configSchema, env)
  if (!config.JWT_SECRET && !config.JWT_SIGNING_KEYS?.length)
    throw new ConfigError(['JWT_SECRET: set JWT_SECRET or JWT_SIGNING_KEYS'])
  return config
}

/**
 * Validates an environment against a schema (all of `configSchema`, or the part a tool
 * needs); an empty variable counts as unset, and the error names every wrong one.
 */
export function parseEnv<T>(schema: z.ZodType<T>, env: NodeJS.ProcessEnv): T {
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  )
  const result = schema.safeParse(present)
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`),
    )
  }
  return result.data
}

let cached: Config | undefined

/** The process's configuration, read from the environment once. */
export function getConfig(): Config {
  cached ??= parseConfig(process.env)
  return cached
}

/** Forgets the cached configuration; tests and the launcher call it after changing env. */
export function resetConfig(): void {
  cached = undefined
}

import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { writeAudit } from '../lib/admin.ts'
import { hashPassword } from '../lib/auth.ts'
import { getConfig, resetConfig } from '../lib/config.ts'
import { credentialsSchema } from '../lib/credentials.ts'
import { closePool, getPool, withTransaction } from '../lib/db.ts'
import { migrate } from '../lib/migrate.ts'
import { revokeAllSessions } from '../lib/sessions.ts'
import { startEmbeddedPostgres } from './embedded.ts'
import { dataDirFrom, readRuntime } from './runtime.ts'

const USAGE = `Creates an admin account, the only way one comes to exist.

  npm run admin:create -- --email EMAIL              new account with role admin
  npm run admin:create -- --email EMAIL --promote    existing account becomes admin
  npm run admin:create -- --email EMAIL --reset-password
                                                     new password, every session ended

The password comes from ADMIN_PASSWORD, or is read from standard input (at least 12
characters). Without DATABASE_URL it uses the database of npm start (DATA_DIR), whether
npm start is running or not.`

const CLI_ACTOR = { id: null, email: 'cli:admin-create' }

type Mode = 'create' | 'promote' | 'reset-password'

class UsageError extends Error {}

async function readPassword(): Promise<string> {
  if (process.env.ADMIN_PASSWORD) return process.env.ADMIN_PASSWORD
  const input = createInterface({ input: process.stdin, terminal: false })
  if (process.stdin.isTTY) process.stderr.write('Password (input is shown): ')
  for await (const line of input) {
    input.close()
    return line
  }
  throw new UsageError('no password: set ADMIN_PASSWORD or pipe it on standard input')
}

async function checkedPassword(): Promise<string> {
  const result = credentialsSchema.shape.password.safeParse(await readPassword())
  if (!result.success)
    throw new UsageError(`password: ${result.error.issues[0]?.message ?? 'invalid'}`)
  return result.data
}

async function createAdmin(email: string, passwordHash: string): Promise<string> {
  return withTransaction(async (client) => {
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO users (email, password_hash, quota_bytes, role)
       VALUES ($1, $2, $3, 'admin')
       ON CONFLICT ((lower(email))) DO NOTHING RETURNING id`,
      [email, passwordHash, getConfig().DEFAULT_QUOTA_BYTES],
    )
    const id = rows[0]?.id
    if (!id) throw new UsageError(`${email} exists: use --promote or --reset-password`)
    await writeAudit(client, {
      actor: CLI_ACTOR,
      action: 'user.create-admin',
      targetType: 'user',
      targetId: id,
      before: null,
      after: { email, role: 'admin' },
    })
    return `created admin ${email} (${id})`
  })
}

async function changeExisting(
  email: string,
  mode: Exclude<Mode, 'create'>,
  passwordHash?: string,
): Promise<string> {
  return withTransaction(async (client) => {
    const { rows } = await client.query<{ id: string; role: string }>(
      'SELECT id, role FROM users WHERE lower(email) = lower($1) FOR UPDATE',
      [email],
    )
    const account = rows[0]
    if (!account) throw new UsageError(`no account uses ${email}`)

    if (mode === 'promote') {
      await client.query(
        "UPDATE users SET role = 'admin', updated_at = now() WHERE id = $1",
        [account.id],
      )
    } else {
      await client.query(
        'UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1',
        [account.id, passwordHash],
      )
      await revokeAllSessions(client, account.id, 'password_reset')
    }
    await writeAudit(client, {
      actor: CLI_ACTOR,
      action: mode === 'promote' ? 'user.promote' : 'user.password-reset',
      targetType: 'user',
      targetId: account.id,
      before: mode === 'promote' ? { role: account.role } : null,
      after: mode === 'promote' ? { role: 'admin' } : { sessionsRevoked: true },
    })
    return mode === 'promote'
      ? `${email} is now an admin`
      : `new password set for ${email}; every session of it ended`
  })
}

async function withDatabase<T>(work: () => Promise<T>): Promise<T> {
  let stopEmbedded: (() => Promise<void>) | undefined
  const dataDir = dataDirFrom(process.env)
  // A running npm start says where its database is; otherwise its files are opened here.
  process.env.DATABASE_URL ||= (await readRuntime(dataDir))?.DATABASE_URL
  if (!process.env.DATABASE_URL) {
    await mkdir(dataDir, { recursive: true })
    const postgres = await startEmbeddedPostgres({
      dataDir: path.join(dataDir, 'postgres'),
    })
    stopEmbedded = postgres.stop
    process.env.DATABASE_URL = postgres.url
  }
  // Only the database is used here; the signing key is not needed to create an account.
  process.env.JWT_SECRET ||= 'unused-by-admin-create-but-required-by-config'
  resetConfig()
  try {
    await migrate(getPool())
    return await work()
  } finally {
    await closePool()
    await stopEmbedded?.()
  }
}

function readMode(values: { promote?: boolean; 'reset-password'?: boolean }): Mode {
  if (values.promote && values['reset-password'])
    throw new UsageError('choose one of --promote and --reset-password')
  if (values.promote) return 'promote'
  return values['reset-password'] ? 'reset-password' : 'create'
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      email: { type: 'string' },
      promote: { type: 'boolean' },
      'reset-password': { type: 'boolean' },
      help: { type: 'boolean' },
    },
  })
  if (values.help) {
    console.log(USAGE)
    return
  }
  const email = credentialsSchema.shape.email.safeParse(values.email ?? '')
  if (!email.success) throw new UsageError('--email: give the account email address')
  const mode = readMode(values)
  const passwordHash =
    mode === 'promote' ? undefined : await hashPassword(await checkedPassword())

  const message = await withDatabase(() =>
    mode === 'create'
      ? createAdmin(email.data, passwordHash as string)
      : changeExisting(email.data, mode, passwordHash),
  )
  console.log(message)
}

try {
  await main()
} catch (error) {
  if (error instanceof UsageError) console.error(`${error.message}\n\n${USAGE}`)
  else console.error(error)
  process.exitCode = 1
}

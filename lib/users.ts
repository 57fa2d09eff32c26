import { isUniqueViolation, query } from './db.ts'
import { conflict } from './errors.ts'

export type Account = {
  id: string
  email: string
  role: 'user' | 'admin'
  quota_bytes: number
  used_bytes: number
  created_at: Date
}

const ACCOUNT_COLUMNS = 'id, email, role, quota_bytes, used_bytes, created_at'

/** Creates an account; a taken email (in any letter case) is a 409. */
export async function createUser(
  email: string,
  passwordHash: string,
  quotaBytes: number,
): Promise<Account> {
  try {
    const { rows } = await query<Account>(
      `INSERT INTO users (email, password_hash, quota_bytes) VALUES ($1, $2, $3)
       RETURNING ${ACCOUNT_COLUMNS}`,
      [email, passwordHash, quotaBytes],
    )
    return rows[0] as Account
  } catch (error) {
    if (isUniqueViolation(error, 'users_email_key')) {
      throw conflict('email_taken', 'An account with this email already exists')
    }
    throw error
  }
}

export async function findLogin(email: string): Promise<
  | {
      id: string
      role: string
      password_hash: string
      disabled: boolean
      token_version: number
    }
  | undefined
> {
  const { rows } = await query<{
    id: string
    role: string
    password_hash: string
    disabled: boolean
    token_version: number
  }>(
    `SELECT id, role, password_hash, disabled, token_version
     FROM users WHERE lower(email) = lower($1)`,
    [email],
  )
  return rows[0]
}

export async function findAccount(id: string): Promise<Account | undefined> {
  const { rows } = await query<Account>(
    `SELECT ${ACCOUNT_COLUMNS} FROM users WHERE id = $1`,
    [id],
  )
  return rows[0]
}

/** The public shape of an account. */
export function presentAccount(account: Account) {
  return {
    id: account.id,
    email: account.email,
    role: account.role,
    quota: { usedBytes: account.used_bytes, totalBytes: account.quota_bytes },
    createdAt: account.created_at.toISOString(),
  }
}

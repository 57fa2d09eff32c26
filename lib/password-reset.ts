import { randomBytes } from 'node:crypto'
import { hashPassword } from './auth.ts'
import { getConfig } from './config.ts'
import { query, withTransaction } from './db.ts'
import { badRequest } from './errors.ts'
import type { RequestLog } from './logger.ts'
import { sendMail } from './mail.ts'
import { publicBaseUrl } from './public-url.ts'
import { checkRateLimit, ratePolicy } from './rate-limit.ts'
import { hashToken, revokeAllSessions } from './sessions.ts'

/** The link a reset mail carries; the token rides in the fragment, never sent on. */
export function resetLink(token: string): string {
  return `${publicBaseUrl()}/reset-password#token=${token}`
}

function resetMailText(link: string, minutes: number): string {
  return [
    'Someone asked to reset the password of your docservice account.',
    '',
    `To choose a new password, open this link within ${minutes} minutes:`,
    link,
    '',
    'The link works once. If you did not ask for it, ignore this mail:',
    'your password stays as it is.',
  ].join('\n')
}

/**
 * Creates a single-use reset token for an enabled account with this email and mails
 * the link, at most as often per account as the `password-reset` policy allows per
 * address. Does nothing, silently, for an unknown or disabled account: the caller
 * answers the same either way. A failed send is logged, never shown.
 */
export async function requestPasswordReset(
  email: string,
  log: RequestLog,
): Promise<void> {
  const { rows } = await query<{ id: string; email: string }>(
    'SELECT id, email FROM users WHERE lower(email) = lower($1) AND NOT disabled',
    [email],
  )
  const account = rows[0]
  if (!account) return
  // Per account too, so that clients behind many addresses cannot flood one mailbox; a
  // refusal changes nothing in the answer, which must not tell accounts apart.
  const mailbox = await checkRateLimit(
    ratePolicy('password-reset'),
    `account:${account.id}`,
  )
  if (!mailbox.allowed) {
    log.info('password reset mail withheld: per-account limit', {
      target_user_id: account.id,
    })
    return
  }

  const ttl = getConfig().PASSWORD_RESET_TTL_SECONDS
  const token = randomBytes(32).toString('base64url')
  await query(
    `INSERT INTO password_reset_tokens (user_id, token_hash, expires_at)
     VALUES ($1, $2, now() + make_interval(secs => $3))`,
    [account.id, hashToken(token), ttl],
  )
  log.info('password reset requested', { target_user_id: account.id })

  try {
    await sendMail({
      to: account.email,
      subject: 'Reset your docservice password',
      text: resetMailText(resetLink(token), Math.round(ttl / 60)),
    })
  } catch (error) {
    log.error('password reset mail not sent', { error: error as Error })
  }
}

/**
 * Sets a new password with a reset token: spends the token (and every other open one
 * of the account) and revokes every session, access tokens included.
 */
export async function confirmPasswordReset(
  token: string,
  password: string,
): Promise<{ userId: string; revokedSessions: number }> {
  const passwordHash = await hashPassword(password)
  return withTransaction(async (client) => {
    // One statement claims the token, so two confirmations cannot both succeed.
    const { rows } = await client.query<{ user_id: string }>(
      `UPDATE password_reset_tokens t SET used_at = now()
       FROM users u
       WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now()
         AND u.id = t.user_id AND NOT u.disabled
       RETURNING t.user_id`,
      [hashToken(token)],
    )
    const userId = rows[0]?.user_id
    if (!userId) {
      throw badRequest(
        'invalid_reset_token',
        'The reset link is invalid, used or expired',
      )
    }

    await client.query(
      'UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1',
      [userId, passwordHash],
    )
    await client.query(
      `UPDATE password_reset_tokens SET used_at = now()
       WHERE user_id = $1 AND used_at IS NULL`,
      [userId],
    )
    const revokedSessions = await revokeAllSessions(client, userId, 'password_reset')
    return { userId, revokedSessions }
  })
}

import { z } from 'zod'
import { credentialsSchema } from '../../../lib/credentials.ts'
import { endpoint } from '../../../lib/http.ts'
import { confirmPasswordReset } from '../../../lib/password-reset.ts'
import { clearedSessionCookies } from '../../../lib/sessions.ts'
import { text } from '../../../lib/validation.ts'

const resetConfirmSchema = z.object({
  token: text().min(16).max(128),
  password: credentialsSchema.shape.password,
})

export const handler = endpoint(
  {
    name: 'auth-password-reset-confirm',
    auth: false,
    // Each attempt costs a password hash; tokens themselves cannot be guessed.
    limits: { ip: 'login' },
    csrf: 'origin',
    body: resetConfirmSchema,
  },
  async function confirmReset({ body, log }) {
    const { userId, revokedSessions } = await confirmPasswordReset(
      body.token,
      body.password,
    )

    log.info('password reset: password set, sessions revoked', {
      target_user_id: userId,
      revoked_sessions: revokedSessions,
    })
    return { statusCode: 204, cookies: clearedSessionCookies() }
  },
)

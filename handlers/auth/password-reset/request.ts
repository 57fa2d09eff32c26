import { setTimeout as delay } from 'node:timers/promises'
import { z } from 'zod'
import { getConfig } from '../../../lib/config.ts'
import { credentialsSchema } from '../../../lib/credentials.ts'
import { endpoint, json } from '../../../lib/http.ts'
import { requestPasswordReset } from '../../../lib/password-reset.ts'

const resetRequestSchema = z.object({ email: credentialsSchema.shape.email })

const ACCEPTED = {
  status: 'accepted',
  detail: 'If an account uses this address, a reset link is on its way to it.',
}

export const handler = endpoint(
  {
    name: 'auth-password-reset-request',
    auth: false,
    limits: { ip: 'password-reset' },
    csrf: 'origin',
    body: resetRequestSchema,
  },
  async function requestReset({ body, log }) {
    const startedAt = performance.now()

    await requestPasswordReset(body.email, log)

    // A known address costs a write and a mail, an unknown one nothing: both answers
    // wait for the same floor, so the time does not tell which addresses exist.
    const floor = getConfig().PASSWORD_RESET_MIN_RESPONSE_MS
    const left = floor - (performance.now() - startedAt)
    if (left > 0) await delay(left)
    return json(202, ACCEPTED)
  },
)

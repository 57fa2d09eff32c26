import { hashPassword } from '../../lib/auth.ts'
import { getConfig } from '../../lib/config.ts'
import { credentialsSchema } from '../../lib/credentials.ts'
import { endpoint, json } from '../../lib/http.ts'
import { createUser, presentAccount } from '../../lib/users.ts'

export const handler = endpoint(
  {
    name: 'auth-register',
    auth: false,
    limits: { ip: 'register' },
    body: credentialsSchema,
  },
  async function register({ body }) {
    const passwordHash = await hashPassword(body.password)

    const account = await createUser(
      body.email,
      passwordHash,
      getConfig().DEFAULT_QUOTA_BYTES,
    )

    return json(201, presentAccount(account), { Location: '/auth/me' })
  },
)

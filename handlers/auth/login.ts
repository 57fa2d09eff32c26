import { signAccessToken, verifyPassword } from '../../lib/auth.ts'
import { credentialsSchema } from '../../lib/credentials.ts'
import { HttpError } from '../../lib/errors.ts'
import { endpoint, json } from '../../lib/http.ts'
import { findLogin } from '../../lib/users.ts'

export const handler = endpoint(
  { name: 'auth-login', auth: false, limits: { ip: 'login' }, body: credentialsSchema },
  async function login({ body }) {
    const account = await findLogin(body.email)
    const valid = await verifyPassword(account?.password_hash, body.password)
    // One answer for an unknown email, a wrong password and a disabled account.
    if (!account || !valid || account.disabled) {
      throw new HttpError(401, 'invalid_credentials', {
        detail: 'Email or password is wrong',
      })
    }

    const { token, expiresIn } = await signAccessToken({
      userId: account.id,
      role: account.role,
    })

    return json(200, { accessToken: token, tokenType: 'Bearer', expiresIn })
  },
)

import { signAccessToken, verifyPassword } from '../../lib/auth.ts'
import { credentialsSchema } from '../../lib/credentials.ts'
import { HttpError } from '../../lib/errors.ts'
import { endpoint, json } from '../../lib/http.ts'
import { createSession, sessionCookies } from '../../lib/sessions.ts'
import { findLogin } from '../../lib/users.ts'

export const handler = endpoint(
  {
    name: 'auth-login',
    auth: false,
    limits: { ip: 'login' },
    csrf: 'origin',
    body: credentialsSchema,
  },
  async function login({ body }) {
    const account = await findLogin(body.email)
    const valid = await verifyPassword(account?.password_hash, body.password)
    // One answer for an unknown email, a wrong password and a disabled account.
    if (!account || !valid || account.disabled) {
      throw new HttpError(401, 'invalid_credentials', {
        detail: 'Email or password is wrong',
      })
    }

    const session = await createSession(account.id)
    const { token, expiresIn } = await signAccessToken({
      userId: account.id,
      role: account.role,
      version: account.token_version,
    })

    // The access token stays in the client's memory; the refresh token in the cookie.
    return {
      ...json(200, {
        accessToken: token,
        tokenType: 'Bearer',
        expiresIn,
        csrfToken: session.csrfToken,
      }),
      cookies: sessionCookies(session),
    }
  },
)

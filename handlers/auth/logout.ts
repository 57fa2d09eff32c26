import { endpoint } from '../../lib/http.ts'
import {
  clearedSessionCookies,
  findSession,
  REFRESH_COOKIE,
  readCookie,
  revokeSession,
} from '../../lib/sessions.ts'

export const handler = endpoint(
  { name: 'auth-logout', auth: false, limits: { ip: 'refresh' }, csrf: 'session' },
  async function logout({ event, log }) {
    const token = readCookie(event, REFRESH_COOKIE)
    const session = token ? await findSession(token) : undefined

    // Without a live session there is nothing to revoke; the cookies are cleared anyway.
    if (session) {
      await revokeSession(session.id, 'logout')
      log.info('session ended', { session_id: session.id })
    }

    return { statusCode: 204, cookies: clearedSessionCookies() }
  },
)

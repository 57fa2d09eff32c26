import { z } from 'zod'
import { revokeUserSessions } from '../../../lib/admin.ts'
import { endpoint } from '../../../lib/http.ts'

export const handler = endpoint(
  {
    name: 'admin-users-sessions-revoke',
    roles: ['admin'],
    limits: { ip: 'ip-ceiling' },
    params: z.object({ id: z.string() }),
  },
  async function revokeAccountSessions({ params, user, context, log }) {
    const audit = await revokeUserSessions(user, params.id, context.state.correlationId)

    log.info('admin action', {
      action: audit.action,
      target_user_id: audit.targetId,
      before: audit.before,
      after: audit.after,
    })
    return { statusCode: 204 }
  },
)

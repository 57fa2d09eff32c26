import { z } from 'zod'
import { presentAdminUser, updateUser } from '../../../lib/admin.ts'
import { endpoint, json } from '../../../lib/http.ts'

const changesSchema = z
  .strictObject({
    quotaBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    disabled: z.boolean(),
    role: z.enum(['user', 'admin']),
  })
  .partial()
  .refine((changes) => Object.keys(changes).length > 0, {
    message: 'name at least one of quotaBytes, disabled, role',
  })

export const handler = endpoint(
  {
    name: 'admin-users-update',
    roles: ['admin'],
    limits: { ip: 'ip-ceiling' },
    params: z.object({ id: z.string() }),
    body: changesSchema,
  },
  async function updateAccount({ params, body, user, context, log }) {
    const { user: updated, audit } = await updateUser(
      user,
      params.id,
      body,
      context.state.correlationId,
    )

    log.info('admin action', {
      action: audit.action,
      target_user_id: audit.targetId,
      before: audit.before,
      after: audit.after,
    })
    return json(200, presentAdminUser(updated))
  },
)

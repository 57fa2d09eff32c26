import { z } from 'zod'
import { findUser, presentAdminUser } from '../../../lib/admin.ts'
import { endpoint, json } from '../../../lib/http.ts'

export const handler = endpoint(
  {
    name: 'admin-users-get',
    roles: ['admin'],
    limits: { ip: 'ip-ceiling' },
    params: z.object({ id: z.string() }),
  },
  async function getAccount({ params }) {
    const user = await findUser(params.id)

    return json(200, presentAdminUser(user))
  },
)

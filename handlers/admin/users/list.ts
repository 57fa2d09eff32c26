import { z } from 'zod'
import { listUsers, presentAdminUser } from '../../../lib/admin.ts'
import { endpoint, json } from '../../../lib/http.ts'
import { text } from '../../../lib/validation.ts'

const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
  email: text().trim().min(1).max(254).optional(),
})

export const handler = endpoint(
  {
    name: 'admin-users-list',
    roles: ['admin'],
    limits: { ip: 'ip-ceiling' },
    query: listQuery,
  },
  async function listAccounts({ query }) {
    const page = await listUsers(query)

    return json(200, {
      items: page.items.map(presentAdminUser),
      nextCursor: page.next ?? null,
    })
  },
)

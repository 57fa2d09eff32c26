import { serviceStats } from '../../lib/admin.ts'
import { endpoint, json } from '../../lib/http.ts'

export const handler = endpoint(
  { name: 'admin-stats', roles: ['admin'], limits: { ip: 'ip-ceiling' } },
  async function stats() {
    return json(200, await serviceStats())
  },
)

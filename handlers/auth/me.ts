import { notFound } from '../../lib/errors.ts'
import { endpoint, json } from '../../lib/http.ts'
import { findAccount, presentAccount } from '../../lib/users.ts'

export const handler = endpoint(
  { name: 'auth-me', limits: { ip: 'ip-ceiling' } },
  async function me({ user }) {
    const account = await findAccount(user.id)
    if (!account) throw notFound('The account no longer exists')

    return json(200, presentAccount(account))
  },
)

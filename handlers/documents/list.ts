import { z } from 'zod'
import { listDocuments, presentDocument, STATUSES } from '../../lib/documents/store.ts'
import { endpoint, json } from '../../lib/http.ts'
import { decodeCursor } from '../../lib/pagination.ts'

const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
  status: z.enum(STATUSES).optional(),
})

export const handler = endpoint(
  {
    name: 'documents-list',
    limits: { ip: 'ip-ceiling', account: 'documents' },
    query: listQuery,
  },
  async function listOwnDocuments({ query, user }) {
    const cursor = query.cursor ? decodeCursor(query.cursor) : undefined

    const page = await listDocuments(user.id, {
      limit: query.limit,
      cursor,
      status: query.status,
    })

    return json(200, {
      items: page.items.map(presentDocument),
      nextCursor: page.next ?? null,
    })
  },
)

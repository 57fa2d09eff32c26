import { documentParams } from '../../lib/documents/params.ts'
import { ownDocument, presentDocument } from '../../lib/documents/store.ts'
import { endpoint, json } from '../../lib/http.ts'

export const handler = endpoint(
  {
    name: 'documents-get',
    limits: { ip: 'ip-ceiling', account: 'documents' },
    params: documentParams,
  },
  async function getDocument({ params, user }) {
    const row = await ownDocument(user.id, params.id)

    return json(200, presentDocument(row))
  },
)

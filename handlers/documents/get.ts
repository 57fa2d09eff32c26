import { documentParams, isDocumentId } from '../../lib/documents/params.ts'
import { findDocument, presentDocument } from '../../lib/documents/store.ts'
import { notFound } from '../../lib/errors.ts'
import { endpoint, json } from '../../lib/http.ts'

export const handler = endpoint(
  {
    name: 'documents-get',
    limits: { ip: 'ip-ceiling', account: 'documents' },
    params: documentParams,
  },
  async function getDocument({ params, user }) {
    const row = isDocumentId(params.id)
      ? await findDocument(user.id, params.id)
      : undefined
    if (!row) throw notFound('No such document')

    return json(200, presentDocument(row))
  },
)

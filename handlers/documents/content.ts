import { attachmentDisposition } from '../../lib/documents/content-disposition.ts'
import { documentParams } from '../../lib/documents/params.ts'
import { ownDocument } from '../../lib/documents/store.ts'
import { endpoint } from '../../lib/http.ts'
import { getObject } from '../../lib/storage.ts'

export const handler = endpoint(
  {
    name: 'documents-content',
    limits: { ip: 'ip-ceiling', account: 'documents' },
    params: documentParams,
  },
  async function getDocumentContent({ params, user }) {
    const row = await ownDocument(user.id, params.id)

    const bytes = await getObject(row.object_key)

    return {
      statusCode: 200,
      headers: {
        'content-type': row.media_type,
        'content-length': String(bytes.length),
        'content-disposition': attachmentDisposition(row.filename),
        'x-content-type-options': 'nosniff',
        etag: `"${row.sha256}"`,
      },
      body: bytes.toString('base64'),
      isBase64Encoded: true,
    }
  },
)

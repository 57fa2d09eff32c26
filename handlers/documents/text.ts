import { documentParams } from '../../lib/documents/params.ts'
import { ownDocument } from '../../lib/documents/store.ts'
import { HttpError } from '../../lib/errors.ts'
import { endpoint, json } from '../../lib/http.ts'

function wantsPlainText(accept: string | undefined): boolean {
  return !!accept && accept.includes('text/plain') && !accept.includes('application/json')
}

export const handler = endpoint(
  {
    name: 'documents-text',
    limits: { ip: 'ip-ceiling', account: 'documents' },
    params: documentParams,
  },
  async function getDocumentText({ event, params, user }) {
    const row = await ownDocument(user.id, params.id, { withText: true })
    if (row.status === 'pending' || row.status === 'processing') {
      throw new HttpError(409, 'extraction_in_progress', {
        detail: `Text extraction is ${row.status}; try again shortly`,
        details: { documentStatus: row.status },
        headers: { 'Retry-After': '2' },
      })
    }

    const text = row.extracted_text ?? ''
    if (wantsPlainText(event.headers?.accept)) {
      return {
        statusCode: 200,
        headers: { 'content-type': 'text/plain; charset=utf-8', Vary: 'Accept' },
        body: text,
      }
    }
    return json(
      200,
      {
        id: row.id,
        status: row.status,
        statusReason: row.status_reason,
        textSource: row.text_source,
        pages: row.pages,
        text,
      },
      { Vary: 'Accept' },
    )
  },
)

import { documentParams } from '../../lib/documents/params.ts'
import { removeDocument } from '../../lib/documents/store.ts'
import { endpoint } from '../../lib/http.ts'
import { deleteObject } from '../../lib/storage.ts'

export const handler = endpoint(
  {
    name: 'documents-delete',
    limits: { ip: 'ip-ceiling', account: 'documents' },
    params: documentParams,
  },
  async function deleteDocument({ params, user, log }) {
    const removed = await removeDocument(user.id, params.id)

    // The row is gone and the quota released; an object that fails to go is only an orphan.
    await deleteObject(removed.objectKey).catch((error) =>
      log.warn('orphan object left after a delete', {
        object_key: removed.objectKey,
        error,
      }),
    )

    return { statusCode: 204 }
  },
)

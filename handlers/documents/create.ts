import { createHash, randomUUID } from 'node:crypto'
import { z } from 'zod'
import { getConfig } from '../../lib/config.ts'
import {
  assertQuotaRoom,
  insertDocument,
  presentDocument,
} from '../../lib/documents/store.ts'
import { cleanFilename, cleanTitle, readUpload } from '../../lib/documents/upload.ts'
import { badRequest, unsupportedMediaType } from '../../lib/errors.ts'
import { ALLOWED_MEDIA_TYPES, sniffMediaType } from '../../lib/extraction/sniff.ts'
import { endpoint, json } from '../../lib/http.ts'
import { deleteObject, putObject } from '../../lib/storage.ts'
import { text } from '../../lib/validation.ts'

const MAX_TITLE_LENGTH = 500

const uploadQuery = z.object({
  filename: text().max(1024).optional(),
  title: text().max(MAX_TITLE_LENGTH).optional(),
})

const EXTENSIONS: Record<string, string> = {
  'application/pdf': 'pdf',
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/tiff': 'tiff',
  'image/webp': 'webp',
}

export const handler = endpoint(
  {
    name: 'documents-create',
    limits: { ip: 'ip-ceiling', account: 'documents' },
    query: uploadQuery,
  },
  async function createDocument({ event, query, user, context, log }) {
    const maxBytes = getConfig().UPLOAD_MAX_BYTES
    const upload = await readUpload(event, query, maxBytes)
    if (upload.bytes.length === 0) throw badRequest('empty_file', 'The file is empty')
    const title = cleanTitle(upload.title, MAX_TITLE_LENGTH)

    // The declared type is ignored: only the bytes say what the file is.
    const mediaType = await sniffMediaType(upload.bytes)
    if (!mediaType) {
      throw unsupportedMediaType(
        'The file is not a PDF, PNG, JPEG, TIFF or WebP document',
        {
          accepted: ALLOWED_MEDIA_TYPES,
        },
      )
    }
    await assertQuotaRoom(user.id, upload.bytes.length)

    const id = randomUUID()
    const filename = cleanFilename(upload.filename) ?? `document.${EXTENSIONS[mediaType]}`
    const objectKey = `documents/${user.id}/${id}`
    await putObject(objectKey, upload.bytes, mediaType)

    try {
      const row = await insertDocument({
        id,
        ownerId: user.id,
        title: title ?? filename,
        filename,
        mediaType,
        sizeBytes: upload.bytes.length,
        sha256: createHash('sha256').update(upload.bytes).digest('hex'),
        objectKey,
        correlationId: context.state.correlationId,
      })
      return json(201, presentDocument(row), { Location: `/documents/${id}` })
    } catch (error) {
      // Nothing half-written: the row was not committed, so the object goes too.
      await deleteObject(objectKey).catch((cleanup) =>
        log.warn('orphan object left after a failed upload', {
          object_key: objectKey,
          error: cleanup,
        }),
      )
      throw error
    }
  },
)

import { batchLoader, query, withTransaction } from '../db.ts'
import { notFound, payloadTooLarge } from '../errors.ts'
import { type Cursor, keysetPage, UUID_PATTERN } from '../pagination.ts'
import { enqueueExtraction } from '../queue.ts'

export const STATUSES = ['pending', 'processing', 'done', 'failed', 'skipped'] as const
export type Status = (typeof STATUSES)[number]

export type DocumentRow = {
  id: string
  owner_id: string
  title: string
  filename: string
  media_type: string
  size_bytes: number
  sha256: string
  object_key: string
  pages: number | null
  status: Status
  status_reason: string | null
  text_source: string | null
  created_at: Date
  updated_at: Date
  extracted_at: Date | null
}

const COLUMNS = `id, owner_id, title, filename, media_type, size_bytes, sha256, object_key,
  pages, status, status_reason, text_source, created_at, updated_at, extracted_at`

export type NewDocument = {
  id: string
  ownerId: string
  title: string
  filename: string
  mediaType: string
  sizeBytes: number
  sha256: string
  objectKey: string
  correlationId: string
}

function quotaExceeded(): Error {
  return payloadTooLarge('quota_exceeded', 'The upload would exceed your storage quota')
}

/** Refuses early, before any bytes are stored, when the quota plainly cannot hold the file. */
export async function assertQuotaRoom(ownerId: string, sizeBytes: number): Promise<void> {
  const { rows } = await query<{ room: boolean }>(
    'SELECT used_bytes + $2 <= quota_bytes AS room FROM users WHERE id = $1',
    [ownerId, sizeBytes],
  )
  if (!rows[0]?.room) throw quotaExceeded()
}

/**
 * Charges the quota, records the document and enqueues its extraction in one
 * transaction. The charge is one conditional UPDATE, so concurrent uploads can never
 * take an account over its quota.
 */
export async function insertDocument(doc: NewDocument): Promise<DocumentRow> {
  return withTransaction(async (client) => {
    const charged = await client.query(
      `UPDATE users SET used_bytes = used_bytes + $2, updated_at = now()
       WHERE id = $1 AND used_bytes + $2 <= quota_bytes`,
      [doc.ownerId, doc.sizeBytes],
    )
    if (charged.rowCount !== 1) throw quotaExceeded()

    const { rows } = await client.query<DocumentRow>(
      `INSERT INTO documents
         (id, owner_id, title, filename, media_type, size_bytes, sha256, object_key, correlation_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       RETURNING ${COLUMNS}`,
      [
        doc.id,
        doc.ownerId,
        doc.title,
        doc.filename,
        doc.mediaType,
        doc.sizeBytes,
        doc.sha256,
        doc.objectKey,
        doc.correlationId,
      ],
    )
    await enqueueExtraction(doc.id, doc.correlationId, client)
    return rows[0] as DocumentRow
  })
}

export type DocumentWithText = DocumentRow & { extracted_text: string | null }

/**
 * The owner's document, or 404. A malformed id, another owner's document and a missing
 * one answer alike, so ids cannot be probed.
 */
export async function ownDocument(ownerId: string, id: string): Promise<DocumentRow>
export async function ownDocument(
  ownerId: string,
  id: string,
  options: { withText: true },
): Promise<DocumentWithText>
export async function ownDocument(
  ownerId: string,
  id: string,
  options: { withText?: boolean } = {},
): Promise<DocumentRow> {
  const columns = options.withText ? `${COLUMNS}, extracted_text` : COLUMNS
  const { rows } = UUID_PATTERN.test(id)
    ? await query<DocumentRow>(
        `SELECT ${columns} FROM documents WHERE id = $1 AND owner_id = $2`,
        [id, ownerId],
      )
    : { rows: [] }
  if (!rows[0]) throw notFound('No such document')
  return rows[0]
}

type PageRequest = {
  ownerId: string
  limit: number
  cursor?: Cursor
  status?: Status
}

type PageRow = DocumentRow & { created_text: string; slot: number }

// One index scan per request (documents_owner_created_idx), all of a batch's in one
// statement; each request gets one row more than its limit, to know whether a next
// page exists.
const PAGES = {
  name: 'documents-pages',
  text: `SELECT request.slot::integer AS slot, page.* FROM
    unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[], $5::integer[])
      WITH ORDINALITY AS request(owner_id, status, after_created, after_id, size, slot)
    CROSS JOIN LATERAL (
      SELECT ${COLUMNS}, created_at::text AS created_text FROM documents
      WHERE owner_id = request.owner_id
        AND (request.status IS NULL OR status = request.status)
        AND (request.after_created IS NULL
          OR (created_at, id) < (request.after_created, request.after_id))
      ORDER BY created_at DESC, id DESC
      LIMIT request.size
    ) AS page
    ORDER BY request.slot, page.created_at DESC, page.id DESC`,
}

async function loadPages(requests: readonly PageRequest[]): Promise<PageRow[][]> {
  const { rows } = await query<PageRow>(PAGES, [
    requests.map((request) => request.ownerId),
    requests.map((request) => request.status ?? null),
    requests.map((request) => request.cursor?.createdAt ?? null),
    requests.map((request) => request.cursor?.id ?? null),
    requests.map((request) => request.limit + 1),
  ])
  const pages: PageRow[][] = requests.map(() => [])
  for (const row of rows) pages[row.slot - 1]?.push(row)
  return pages
}

// The pages asked for in one turn of the event loop share one round trip (lib/db.ts).
const pages = batchLoader(loadPages)

/**
 * One page of an owner's documents, newest first. The cursor carries the last row's
 * timestamp as PostgreSQL prints it, so no microseconds are lost on the way.
 */
export async function listDocuments(
  ownerId: string,
  options: { limit: number; cursor?: Cursor; status?: Status },
): Promise<{ items: DocumentRow[]; next?: string }> {
  const rows = await pages.load({ ownerId, ...options })
  return keysetPage(rows, options.limit)
}

/**
 * Removes the owner's row and releases its quota, or answers 404 like `ownDocument`;
 * the caller removes the object afterwards.
 */
export async function removeDocument(
  ownerId: string,
  id: string,
): Promise<{ objectKey: string }> {
  if (!UUID_PATTERN.test(id)) throw notFound('No such document')
  return withTransaction(async (client) => {
    const { rows } = await client.query<{ object_key: string; size_bytes: number }>(
      'DELETE FROM documents WHERE id = $1 AND owner_id = $2 RETURNING object_key, size_bytes',
      [id, ownerId],
    )
    const removed = rows[0]
    if (!removed) throw notFound('No such document')

    await client.query(
      `UPDATE users SET used_bytes = greatest(used_bytes - $2, 0), updated_at = now()
       WHERE id = $1`,
      [ownerId, removed.size_bytes],
    )
    return { objectKey: removed.object_key }
  })
}

/** The public shape of a document. */
export function presentDocument(row: DocumentRow) {
  return {
    id: row.id,
    title: row.title,
    filename: row.filename,
    mediaType: row.media_type,
    sizeBytes: row.size_bytes,
    sha256: row.sha256,
    pages: row.pages,
    status: row.status,
    statusReason: row.status_reason,
    textSource: row.text_source,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    extractedAt: row.extracted_at?.toISOString() ?? null,
  }
}

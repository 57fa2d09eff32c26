import { z } from 'zod'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * `{id}` of a document route. A malformed id is simply a document that does not exist,
 * so it answers 404 like any other missing or foreign document.
 */
export const documentParams = z.object({ id: z.string() })

export function isDocumentId(id: string): boolean {
  return UUID.test(id)
}

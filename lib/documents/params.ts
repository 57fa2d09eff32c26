import { z } from 'zod'

/**
 * `{id}` of a document route. It is not checked for shape here: a malformed id is a
 * document that does not exist, and answers 404 like any other (see `ownDocument`).
 */
export const documentParams = z.object({ id: z.string() })

import { z } from 'zod'
import { unprocessable } from './errors.ts'

/**
 * A string that PostgreSQL can store: text columns refuse U+0000, so it is a
 * validation error here rather than a database error later.
 */
export const text = () =>
  z.string().refine((value) => !value.includes('\u0000'), {
    message: 'must not contain the NUL character',
  })

/** Parses a value against a schema, answering 422 with every failing field named. */
export function validate<T>(
  schema: z.ZodType<T> | undefined,
  value: unknown,
  location: 'body' | 'query' | 'path',
): T | undefined {
  if (!schema) return undefined
  const result = schema.safeParse(value)
  if (result.success) return result.data

  const errors = result.error.issues.map((issue) => ({
    field: [location, ...issue.path].join('.'),
    message: issue.message,
  }))
  const fields = errors.map((error) => error.field).join(', ')
  throw unprocessable(`Invalid ${fields}`, errors)
}

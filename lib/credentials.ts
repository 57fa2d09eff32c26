import { z } from 'zod'
import { text } from './validation.ts'

/** Email and password as register and login accept them. */
export const credentialsSchema = z.object({
  email: text()
    .trim()
    .max(254)
    .pipe(z.email({ message: 'must be an email address' })),
  password: text()
    .min(12, 'must be at least 12 characters')
    .max(256, 'must be at most 256 characters'),
})

export type Credentials = z.infer<typeof credentialsSchema>

import { endpoint, json } from '../lib/http.ts'

/** Liveness: the process answers. Readiness of its dependencies is `/ready`'s job. */
export const handler = endpoint({ name: 'health', auth: false }, async function health() {
  return json(200, { status: 'ok' })
})

import { getConfig } from './config.ts'

/** Where links in mails point: PUBLIC_BASE_URL, else the local gateway. */
export function publicBaseUrl(): string {
  const config = getConfig()
  const base = config.PUBLIC_BASE_URL ?? `http://localhost:${config.PORT}`
  return base.replace(/\/+$/, '')
}

/**
 * Artillery hooks for loadtest/scenario.yml. Each virtual user is one person: its own
 * account and its own client address, presented through `X-Forwarded-For` the way users
 * arrive behind a proxy (the gateway's peer, loopback, is a trusted proxy), so the
 * per-IP login limit and the per-account document limit apply to it alone.
 *
 * Loaded through processor.mjs in Artillery's worker; it imports nothing from the service.
 */
import { randomBytes } from 'node:crypto'

type Vars = Record<string, unknown>
type Context = { vars: Vars }
type Events = { emit(kind: 'counter', name: string, value: number): void }
type Done = (error?: Error) => void
type Request = { name?: string; url?: string }
type Response = { statusCode: number; body?: unknown }

const RUN_ID = randomBytes(4).toString('hex')
const LOADED_AT = Date.now()

let usersStarted = 0

function clientAddress(index: number): string {
  // 198.18.0.0/15, the benchmarking range (RFC 2544): never routed, so the addresses
  // impersonate no real client. The worker id keeps two Artillery workers' users apart.
  const worker = Number(process.env.LOCAL_WORKER_ID ?? 0) % 2
  const host = index % 65_534
  return `198.${18 + worker}.${host >> 8}.${(host & 255) + 1}`
}

/** Gives the virtual user its identity: an email, a password and a client address. */
export function identify(context: Context, events: Events, done: Done): void {
  usersStarted += 1
  const user = `${RUN_ID}-${usersStarted}`
  context.vars.email = `load-${user}@loadtest.example`
  context.vars.password = `load-${randomBytes(12).toString('base64url')}`
  context.vars.forwardedFor = clientAddress(usersStarted)
  // Counters exist in the summary only once emitted; `ensure` must see a zero.
  events.emit('counter', 'loadtest.unexpected_status', 0)
  done()
}

/**
 * Keeps the user's loop going until the soak ends: `soakSeconds` after the load
 * generator started, so every user stops at the same moment however late it arrived.
 */
export function soakGoesOn(context: Context, next: (more: boolean) => void): void {
  const seconds = Number(context.vars.soakSeconds ?? 0)
  next(Date.now() < LOADED_AT + seconds * 1000)
}

/**
 * Every answer in this scenario is a 2xx; anything else (a 429 included) is counted and
 * ends the virtual user, which Artillery then counts as failed.
 */
export function checkStatus(
  request: Request,
  response: Response,
  _context: Context,
  events: Events,
  done: Done,
): void {
  const status = response.statusCode
  if (status >= 200 && status < 300) {
    done()
    return
  }

  events.emit('counter', 'loadtest.unexpected_status', 1)
  events.emit(
    'counter',
    `loadtest.unexpected_status.${request.name ?? 'unnamed'}.${status}`,
    1,
  )
  const body = typeof response.body === 'string' ? response.body.slice(0, 300) : ''
  done(new Error(`${request.name ?? request.url} answered ${status}: ${body}`))
}

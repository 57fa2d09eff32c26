import { randomUUID } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { simpleParser } from 'mailparser'
import { SMTPServer } from 'smtp-server'

export type CaughtMail = {
  id: string
  from: string
  to: string[]
  subject: string
  text: string
  receivedAt: Date
  /** The message's readable text file (an .eml beside it), when the catcher keeps files. */
  file?: string
}

export type MailCatcher = {
  /** smtp://host:port, for SMTP_URL. */
  url: string
  messages(): CaughtMail[]
  /** The first message (caught already or still to come) that matches, or a timeout. */
  waitForMail(
    match: (mail: CaughtMail) => boolean,
    timeoutMs?: number,
  ): Promise<CaughtMail>
  stop(): Promise<void>
}

type CatcherOptions = {
  host?: string
  port?: number
  /** Keeps each message as an .eml file here, for a developer to open. */
  dir?: string
  onMail?: (mail: CaughtMail) => void
}

const MAX_KEPT = 200
const MAX_MESSAGE_BYTES = 1024 * 1024

async function readStream(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer))
  return Buffer.concat(chunks)
}

async function toMail(raw: Buffer, envelopeTo: string[]): Promise<CaughtMail> {
  const parsed = await simpleParser(raw)
  return {
    id: randomUUID(),
    from: parsed.from?.text ?? '',
    to: envelopeTo,
    subject: parsed.subject ?? '',
    text: parsed.text ?? '',
    receivedAt: new Date(),
  }
}

function readable(mail: CaughtMail): string {
  return [
    `From: ${mail.from}`,
    `To: ${mail.to.join(', ')}`,
    `Subject: ${mail.subject}`,
    `Received: ${mail.receivedAt.toISOString()}`,
    '',
    mail.text,
  ].join('\n')
}

/**
 * A local SMTP server that accepts every message and keeps it, in memory for tests and
 * as .eml files for a developer: the mail of `npm start` and of the tests never leaves
 * the machine. It listens on loopback only and asks for no authentication.
 */
export async function startMailCatcher(
  options: CatcherOptions = {},
): Promise<MailCatcher> {
  const host = options.host ?? '127.0.0.1'
  const kept: CaughtMail[] = []
  const arrivals = new EventEmitter()

  async function keep(raw: Buffer, to: string[]): Promise<void> {
    const mail = await toMail(raw, to)
    if (options.dir) {
      // Reset links are live credentials: readable by this user only.
      await mkdir(options.dir, { recursive: true, mode: 0o700 })
      await chmod(options.dir, 0o700)
      const stamp = mail.receivedAt.toISOString().replace(/[:.]/g, '-')
      const base = path.join(options.dir, `${stamp}-${mail.id}`)
      // The .eml as sent, and a plain view with the text decoded for reading.
      await writeFile(`${base}.eml`, raw, { mode: 0o600 })
      mail.file = `${base}.txt`
      await writeFile(mail.file, readable(mail), { mode: 0o600 })
    }
    kept.push(mail)
    if (kept.length > MAX_KEPT) kept.shift()
    options.onMail?.(mail)
    arrivals.emit('mail', mail)
  }

  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    size: MAX_MESSAGE_BYTES,
    logger: false,
    // Senders that keep pooled connections open must not hold up a stop for long.
    closeTimeout: 1_000,
    onData(stream, session, callback) {
      const to = session.envelope.rcptTo.map((address) => address.address)
      readStream(stream)
        .then((raw) => keep(raw, to))
        .then(() => callback(), callback)
    },
  })

  server.listen(options.port ?? 0, host)
  await once(server.server, 'listening')
  const address = server.server.address()
  const port = typeof address === 'object' && address ? address.port : 0

  async function waitForMail(
    match: (mail: CaughtMail) => boolean,
    timeoutMs = 10_000,
  ): Promise<CaughtMail> {
    const found = kept.find(match)
    if (found) return found
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        arrivals.off('mail', check)
        reject(new Error(`no matching mail arrived within ${timeoutMs} ms`))
      }, timeoutMs)
      function check(mail: CaughtMail): void {
        if (!match(mail)) return
        clearTimeout(timer)
        arrivals.off('mail', check)
        resolve(mail)
      }
      arrivals.on('mail', check)
    })
  }

  return {
    url: `smtp://${host.includes(':') ? `[${host}]` : host}:${port}`,
    messages: () => [...kept],
    waitForMail,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

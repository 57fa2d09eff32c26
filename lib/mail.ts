import nodemailer, { type Transporter } from 'nodemailer'
import { getConfig } from './config.ts'

export type Mail = { to: string; subject: string; text: string }

let transport: { url: string; transporter: Transporter } | undefined

function transporter(url: string): Transporter {
  if (transport?.url !== url) {
    transport?.transporter.close()
    transport = {
      url,
      // A stalled mail server must not hold a request for long.
      transporter: nodemailer.createTransport({
        url,
        // Reused connections: a handshake per mail would be most of a reset's time.
        pool: true,
        maxConnections: 2,
        connectionTimeout: 5_000,
        greetingTimeout: 5_000,
        socketTimeout: 10_000,
      }),
    }
  }
  return transport.transporter
}

/** Sends a plain-text mail through SMTP_URL; throws when it is unset or the send fails. */
export async function sendMail(mail: Mail): Promise<void> {
  const config = getConfig()
  if (!config.SMTP_URL) throw new Error('SMTP_URL is not set: mail cannot be sent')

  await transporter(config.SMTP_URL).sendMail({
    from: config.MAIL_FROM,
    to: mail.to,
    subject: mail.subject,
    text: mail.text,
  })
}

/** Closes the SMTP connection pool, for shutdown and tests. */
export function closeMail(): void {
  transport?.transporter.close()
  transport = undefined
}

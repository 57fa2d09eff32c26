import path from 'node:path'
import Busboy from 'busboy'
import { badRequest, payloadTooLarge, unprocessable } from '../errors.ts'
import { type ApiEvent, bodyBytes } from '../http.ts'

export type Upload = {
  bytes: Buffer
  filename: string | undefined
  title: string | undefined
}

const MAX_NAME_LENGTH = 255

// Control characters, and the bidirectional overrides that can disguise an extension
// (`evil\u202egnp.exe` shows as `evilexe.png`).
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

function stripUnsafe(text: string): string {
  return text.replace(UNSAFE, '')
}

/** A title as metadata: no control characters, trimmed; too long is a 422. */
export function cleanTitle(
  title: string | undefined,
  maxLength: number,
): string | undefined {
  if (title === undefined) return undefined
  const cleaned = stripUnsafe(title).trim()
  if (cleaned.length > maxLength) {
    throw unprocessable('The title is too long', [
      { field: 'body.title', message: `must be at most ${maxLength} characters` },
    ])
  }
  return cleaned || undefined
}

/** A client's filename as metadata: no directories, no control characters, bounded. */
export function cleanFilename(name: string | undefined): string | undefined {
  if (!name) return undefined
  const base = path.posix.basename(name.replaceAll('\\', '/'))
  const printable = stripUnsafe(base).trim()
  return printable ? printable.slice(0, MAX_NAME_LENGTH) : undefined
}

function tooLarge(maxBytes: number): Error {
  return payloadTooLarge('file_too_large', `The file is larger than ${maxBytes} bytes`, {
    maxBytes,
  })
}

const unreadable = () =>
  badRequest('malformed_multipart', 'The multipart body cannot be read')

function formError(message: string) {
  return unprocessable(message, [{ field: 'body.file', message }])
}

/**
 * Reads the single `file` part (and an optional `title`) of a multipart body. Every
 * stream gets an error listener: a body cut off mid-part must end in a 400, never in an
 * uncaught error.
 */
function parseMultipart(
  contentType: string,
  body: Buffer,
  maxBytes: number,
): Promise<Upload> {
  return new Promise((resolve, reject) => {
    let parser: Busboy.Busboy
    try {
      parser = Busboy({
        headers: { 'content-type': contentType },
        // Browsers send file names as raw UTF-8.
        defParamCharset: 'utf8',
        // One byte over the limit is how busboy tells "too large" from "exactly the limit".
        limits: {
          files: 1,
          fileSize: maxBytes + 1,
          fields: 8,
          fieldSize: 4096,
          parts: 10,
        },
      })
    } catch {
      reject(unreadable())
      return
    }

    const chunks: Buffer[] = []
    let size = 0
    let filename: string | undefined
    let title: string | undefined
    let sawFile = false
    let failure: Error | undefined
    const fail = (error: Error) => {
      failure ??= error
    }

    parser.on('file', (field, stream, info) => {
      stream.on('error', () => fail(unreadable()))
      if (field !== 'file' || sawFile) {
        stream.resume()
        return
      }
      sawFile = true
      filename = info.filename
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size <= maxBytes) chunks.push(chunk)
      })
      stream.on('limit', () => fail(tooLarge(maxBytes)))
    })
    parser.on('field', (field, value) => {
      if (field === 'title') title = value
    })
    parser.on('filesLimit', () => fail(formError('Send one file per upload')))
    parser.on('partsLimit', () => fail(formError('The form has too many parts')))
    parser.on('fieldsLimit', () => fail(formError('The form has too many fields')))
    parser.on('error', () => reject(failure ?? unreadable()))
    parser.on('close', () => {
      if (failure) return reject(failure)
      if (!sawFile) {
        return reject(formError('The form has no part named "file" with a filename'))
      }
      resolve({ bytes: Buffer.concat(chunks), filename, title })
    })
    parser.end(body)
  })
}

/**
 * The uploaded file from either form: multipart/form-data with a `file` part, or the raw
 * bytes as the body with the filename in the query string.
 */
export async function readUpload(
  event: ApiEvent,
  query: { filename?: string; title?: string },
  maxBytes: number,
): Promise<Upload> {
  const contentType = event.headers?.['content-type'] ?? ''
  const body = bodyBytes(event)

  if (/^multipart\/form-data/i.test(contentType)) {
    const upload = await parseMultipart(contentType, body, maxBytes)
    return { ...upload, title: upload.title ?? query.title }
  }

  if (body.length > maxBytes) throw tooLarge(maxBytes)
  return { bytes: body, filename: query.filename, title: query.title }
}

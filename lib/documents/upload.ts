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

/** A client's filename as metadata: no directories, no control characters, bounded. */
export function cleanFilename(name: string | undefined): string | undefined {
  if (!name) return undefined
  const base = path.posix.basename(name.replaceAll('\\', '/'))
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
  const printable = base.replace(/[\u0000-\u001f\u007f]/g, '').trim()
  return printable ? printable.slice(0, MAX_NAME_LENGTH) : undefined
}

function tooLarge(maxBytes: number): Error {
  return payloadTooLarge('file_too_large', `The file is larger than ${maxBytes} bytes`, {
    maxBytes,
  })
}

/** Reads the single `file` part (and an optional `title`) of a multipart body. */
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
        limits: { files: 1, fileSize: maxBytes, fields: 8, fieldSize: 4096, parts: 10 },
      })
    } catch {
      reject(badRequest('malformed_multipart', 'The multipart body cannot be read'))
      return
    }

    const chunks: Buffer[] = []
    let filename: string | undefined
    let title: string | undefined
    let sawFile = false
    let failure: Error | undefined

    parser.on('file', (field, stream, info) => {
      if (field !== 'file' || sawFile) {
        stream.resume()
        return
      }
      sawFile = true
      filename = info.filename
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('limit', () => {
        failure = tooLarge(maxBytes)
      })
    })
    parser.on('field', (field, value) => {
      if (field === 'title') title = value
    })
    parser.on('error', () =>
      reject(badRequest('malformed_multipart', 'The multipart body cannot be read')),
    )
    parser.on('close', () => {
      if (failure) return reject(failure)
      if (!sawFile) {
        return reject(
          unprocessable('The form has no file part', [
            { field: 'body.file', message: 'a part named "file" is required' },
          ]),
        )
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

import { STATUS_CODES } from 'node:http'

export type ProblemDetails = Record<string, unknown>

type HttpErrorOptions = {
  detail?: string
  details?: ProblemDetails
  headers?: Record<string, string>
  cause?: unknown
  expose?: boolean
}

/**
 * The one error type that crosses the HTTP edge: a status, a stable machine code,
 * and whether its message may be shown to the caller.
 */
export class HttpError extends Error {
  readonly status: number
  readonly code: string
  readonly expose: boolean
  readonly details: ProblemDetails | undefined
  readonly headers: Record<string, string>

  constructor(status: number, code: string, options: HttpErrorOptions = {}) {
    super(options.detail ?? STATUS_CODES[status] ?? 'Error', { cause: options.cause })
    this.name = 'HttpError'
    this.status = status
    this.code = code
    this.expose = options.expose ?? status < 500
    this.details = options.details
    this.headers = options.headers ?? {}
  }
}

export const badRequest = (code: string, detail: string, details?: ProblemDetails) =>
  new HttpError(400, code, { detail, details })

export const unauthorized = (detail = 'Missing or invalid access token') =>
  new HttpError(401, 'unauthorized', {
    detail,
    headers: { 'WWW-Authenticate': 'Bearer' },
  })

export const forbidden = (detail = 'Not allowed') =>
  new HttpError(403, 'forbidden', { detail })

export const notFound = (detail = 'Not found') =>
  new HttpError(404, 'not_found', { detail })

export const conflict = (code: string, detail: string) =>
  new HttpError(409, code, { detail })

export const payloadTooLarge = (code: string, detail: string, details?: ProblemDetails) =>
  new HttpError(413, code, { detail, details })

export const unsupportedMediaType = (detail: string, details?: ProblemDetails) =>
  new HttpError(415, 'unsupported_media_type', { detail, details })

export const unprocessable = (detail: string, errors: ProblemDetails[]) =>
  new HttpError(422, 'validation_failed', { detail, details: { errors } })

export const serviceUnavailable = (code: string, detail: string, cause?: unknown) =>
  new HttpError(503, code, {
    detail,
    cause,
    expose: true,
    headers: { 'Retry-After': '5' },
  })

export type Problem = {
  type: string
  title: string
  status: number
  detail: string
  code: string
  correlationId?: string
  [key: string]: unknown
}

/** Builds an RFC 9457 problem document; internal messages never leave. */
export function toProblem(error: unknown, correlationId?: string): Problem {
  const known = error instanceof HttpError
  const status = known ? error.status : 500
  const code = known ? error.code : 'internal_error'
  const detail =
    known && error.expose ? error.message : 'The server could not complete the request'

  // Extension members come first so that none can overwrite a standard one.
  return {
    ...(known && error.details ? error.details : {}),
    type: `tag:docservice,2026:problem/${code}`,
    title: STATUS_CODES[status] ?? 'Error',
    status,
    detail,
    code,
    ...(correlationId ? { correlationId } : {}),
  }
}

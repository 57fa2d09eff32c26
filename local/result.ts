import { type ServerResponse, validateHeaderName, validateHeaderValue } from 'node:http'
import { type HttpError, toProblem } from '../lib/errors.ts'

/** An HTTP answer ready to write: lower-case header names, the body as bytes. */
export type Reply = {
  statusCode: number
  headers: Record<string, string | string[]>
  body: Buffer
}

export class MalformedResultError extends Error {
  constructor(reason: string) {
    super(`malformed function result: ${reason}`)
    this.name = 'MalformedResultError'
  }
}

type HeaderValue = string | number | boolean

// The gateway frames the message itself; a function cannot set these.
const HOP_BY_HOP = new Set([
  'connection',
  'content-length',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
])

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Turns a payload 2.0 result into a reply the way API Gateway does. An object with a
 * `statusCode` is a structured result; anything else (a string, an object without
 * `statusCode`, null) is answered 200 with its JSON. Throws `MalformedResultError` when a
 * structured result cannot be sent (bad status, body or header), which answers 502.
 */
export function replyFromResult(result: unknown): Reply {
  if (!isRecord(result) || !('statusCode' in result)) {
    return {
      statusCode: 200,
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify(result ?? null) ?? 'null', 'utf8'),
    }
  }

  const headers = collectResultHeaders(result)
  const cookies = cookieList(result.cookies)
  if (cookies.length > 0)
    headers['set-cookie'] = [...asList(headers['set-cookie']), ...cookies]
  return { statusCode: statusOf(result.statusCode), headers, body: bodyOf(result) }
}

function statusOf(value: unknown): number {
  if (
    typeof value === 'number' &&
    Number.isInteger(value) &&
    value >= 100 &&
    value <= 599
  ) {
    return value
  }
  throw new MalformedResultError('statusCode must be an integer from 100 to 599')
}

function bodyOf(result: Record<string, unknown>): Buffer {
  const { body, isBase64Encoded } = result
  if (body === undefined || body === null) return Buffer.alloc(0)
  if (typeof body !== 'string') throw new MalformedResultError('body must be a string')
  return Buffer.from(body, isBase64Encoded === true ? 'base64' : 'utf8')
}

function collectResultHeaders(result: Record<string, unknown>): Reply['headers'] {
  const headers: Reply['headers'] = Object.create(null)
  for (const [name, value] of headerEntries(result.headers)) add(headers, name, value)
  for (const [name, values] of multiValueEntries(result.multiValueHeaders)) {
    for (const value of values) add(headers, name, value)
  }
  return headers
}

function headerEntries(value: unknown): [string, HeaderValue][] {
  if (value === undefined || value === null) return []
  if (!isRecord(value)) throw new MalformedResultError('headers must be an object')
  return Object.entries(value).map(([name, item]) => [name, headerValue(item)])
}

function multiValueEntries(value: unknown): [string, HeaderValue[]][] {
  if (value === undefined || value === null) return []
  if (!isRecord(value))
    throw new MalformedResultError('multiValueHeaders must be an object')
  return Object.entries(value).map(([name, items]) => {
    if (!Array.isArray(items)) throw new MalformedResultError(`${name} must be an array`)
    return [name, items.map(headerValue)]
  })
}

function headerValue(value: unknown): HeaderValue {
  if (
    typeof value === 'string' ||
    typeof value === 'number' ||
    typeof value === 'boolean'
  ) {
    return value
  }
  throw new MalformedResultError('header values must be strings, numbers or booleans')
}

function add(headers: Reply['headers'], name: string, value: HeaderValue): void {
  const key = name.toLowerCase()
  if (HOP_BY_HOP.has(key)) return

  const text = String(value)
  try {
    validateHeaderName(key)
    validateHeaderValue(key, text)
  } catch (cause) {
    throw new MalformedResultError(`header ${JSON.stringify(name)}: ${String(cause)}`)
  }

  const previous = headers[key]
  headers[key] = previous === undefined ? text : [...asList(previous), text]
}

function cookieList(value: unknown): string[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value) || !value.every((cookie) => typeof cookie === 'string')) {
    throw new MalformedResultError('cookies must be an array of strings')
  }
  for (const cookie of value) validateCookie(cookie)
  return value
}

function validateCookie(cookie: string): void {
  try {
    validateHeaderValue('set-cookie', cookie)
  } catch (cause) {
    throw new MalformedResultError(`cookie: ${String(cause)}`)
  }
}

function asList(value: string | string[] | undefined): string[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

/** The gateway's own errors: an RFC 9457 problem document, never a 200. */
export function problemReply(error: HttpError, correlationId: string): Reply {
  const headers: Reply['headers'] = { 'content-type': 'application/problem+json' }
  for (const [name, value] of Object.entries(error.headers))
    headers[name.toLowerCase()] = value
  headers['x-correlation-id'] = correlationId

  const body = Buffer.from(JSON.stringify(toProblem(error, correlationId)), 'utf8')
  return { statusCode: error.status, headers, body }
}

/** Every response carries `X-Correlation-ID`; the function's own value wins. */
export function withCorrelationId(reply: Reply, correlationId: string): Reply {
  if (reply.headers['x-correlation-id'] !== undefined) return reply
  return { ...reply, headers: { ...reply.headers, 'x-correlation-id': correlationId } }
}

function carriesBody(statusCode: number): boolean {
  return statusCode >= 200 && statusCode !== 204 && statusCode !== 304
}

/** Writes a reply with its length; Node drops the body where HEAD, 204 or 304 forbid one. */
export function writeReply(response: ServerResponse, reply: Reply): void {
  const headers = { ...reply.headers }
  if (carriesBody(reply.statusCode)) headers['content-length'] = String(reply.body.length)

  response.writeHead(reply.statusCode, headers)
  response.end(reply.body)
}

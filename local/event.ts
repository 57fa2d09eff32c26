import { isUtf8 } from 'node:buffer'
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { APIGatewayProxyEventV2 } from 'aws-lambda'
import type { Route } from '../lib/routes.ts'

/** What the event is built from: an HTTP request as it came off the wire. */
export type RawRequest = {
  method: string
  /** The request target exactly as sent: path and query, still percent-encoded. */
  target: string
  /** Alternating names and values, in arrival order, as `IncomingMessage.rawHeaders`. */
  rawHeaders: readonly string[]
  sourceIp: string
  protocol: string
  body: Buffer
}

export type MatchedRoute = { route: Route; rawPathParameters: Record<string, string> }

const ACCOUNT_ID = '000000000000'
const API_ID = 'local'
const MONTHS = 'Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec'.split(' ')

const TEXT_TYPES = new Set([
  'application/json',
  'application/xml',
  'application/javascript',
  'application/ecmascript',
  'application/x-www-form-urlencoded',
  'application/graphql',
  'application/x-ndjson',
  'application/yaml',
])

/** Reads what the event needs from a Node request; the body is read by the caller. */
export function rawRequestFrom(request: IncomingMessage, body: Buffer): RawRequest {
  return {
    method: request.method ?? 'GET',
    target: request.url ?? '/',
    rawHeaders: request.rawHeaders,
    sourceIp: plainAddress(request.socket.remoteAddress ?? ''),
    protocol: `HTTP/${request.httpVersion}`,
    body,
  }
}

/** Splits a request target into the path and the query, both still encoded. */
export function splitTarget(target: string): { rawPath: string; rawQueryString: string } {
  const question = target.indexOf('?')
  if (question === -1) return { rawPath: target, rawQueryString: '' }
  return {
    rawPath: target.slice(0, question),
    rawQueryString: target.slice(question + 1),
  }
}

/**
 * Builds an API Gateway HTTP API payload 2.0 event the way API Gateway does: header
 * names lower-cased with duplicates comma-joined, the Cookie header moved to `cookies`,
 * raw path and query kept as sent, parameters decoded, and the body kept byte-exact
 * (text only when it is declared textual and is valid UTF-8, base64 otherwise).
 */
export function buildEvent(
  request: RawRequest,
  match: MatchedRoute,
): APIGatewayProxyEventV2 {
  const { rawPath, rawQueryString } = splitTarget(request.target)
  const { headers, cookies } = collectHeaders(request.rawHeaders)
  const routeKey = `${match.route.method} ${match.route.path}`
  const domainName = domainOf(headers.host)
  const now = Date.now()

  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey,
    rawPath,
    rawQueryString,
    ...(cookies.length > 0 ? { cookies } : {}),
    headers,
    ...queryParameters(rawQueryString),
    ...pathParameters(match.rawPathParameters),
    requestContext: {
      accountId: ACCOUNT_ID,
      apiId: API_ID,
      domainName,
      domainPrefix: domainName.split('.')[0] ?? API_ID,
      http: {
        method: request.method,
        path: rawPath,
        protocol: request.protocol,
        sourceIp: request.sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey,
      stage: '$default',
      time: clfTime(now),
      timeEpoch: now,
    },
    isBase64Encoded: false,
  }
  return withBody(event, request.body, headers['content-type'])
}

/**
 * Lower-cases names and joins repeated headers with commas, keeping underscores. The
 * Cookie header does not appear in `headers`: payload 2.0 carries it as `cookies`,
 * split on `;` and trimmed, without validating the pairs.
 */
export function collectHeaders(rawHeaders: readonly string[]): {
  headers: Record<string, string>
  cookies: string[]
} {
  const headers: Record<string, string> = Object.create(null)
  const cookies: string[] = []

  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    const name = (rawHeaders[index] as string).toLowerCase()
    const value = rawHeaders[index + 1] as string
    if (name === 'cookie') {
      cookies.push(...splitCookies(value))
      continue
    }
    const previous = headers[name]
    headers[name] = previous === undefined ? value : `${previous},${value}`
  }

  return { headers: { ...headers }, cookies }
}

function splitCookies(value: string): string[] {
  return value
    .split(';')
    .map((cookie) => cookie.trim())
    .filter((cookie) => cookie !== '')
}

/** Decoded query parameters (`+` is a space), repeated keys comma-joined. */
function queryParameters(rawQueryString: string): {
  queryStringParameters?: Record<string, string>
} {
  if (rawQueryString === '') return {}

  const parameters: Record<string, string> = Object.create(null)
  for (const [key, value] of new URLSearchParams(rawQueryString)) {
    const previous = parameters[key]
    parameters[key] = previous === undefined ? value : `${previous},${value}`
  }
  if (Object.keys(parameters).length === 0) return {}
  return { queryStringParameters: { ...parameters } }
}

function pathParameters(raw: Record<string, string>): {
  pathParameters?: Record<string, string>
} {
  const entries = Object.entries(raw)
  if (entries.length === 0) return {}
  return {
    pathParameters: Object.fromEntries(
      entries.map(([key, value]) => [key, decode(value)]),
    ),
  }
}

/** Percent-decodes; a malformed sequence is passed on as sent rather than refused. */
function decode(value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

function withBody(
  event: APIGatewayProxyEventV2,
  body: Buffer,
  contentType: string | undefined,
): APIGatewayProxyEventV2 {
  if (body.length === 0) return event
  if (isTextual(contentType) && isUtf8(body))
    return { ...event, body: body.toString('utf8') }
  return { ...event, body: body.toString('base64'), isBase64Encoded: true }
}

/** Whether a media type is text: only then may its bytes travel as a string. */
export function isTextual(contentType: string | undefined): boolean {
  if (!contentType) return false
  const type = (contentType.split(';')[0] ?? '').trim().toLowerCase()
  return (
    type.startsWith('text/') ||
    TEXT_TYPES.has(type) ||
    type.endsWith('+json') ||
    type.endsWith('+xml')
  )
}

function domainOf(host: string | undefined): string {
  if (!host) return 'localhost'
  return host.startsWith('[')
    ? host.slice(0, host.indexOf(']') + 1)
    : (host.split(':')[0] ?? host)
}

/** An IPv4 client seen through a dual-stack socket is reported as plain IPv4. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.')
    ? address.slice(7)
    : address
}

let clfSecond = -1
let clfText = ''

/** API Gateway's request time, `12/Mar/2020:19:03:58 +0000`, formatted once a second. */
function clfTime(epochMs: number): string {
  const second = Math.floor(epochMs / 1000)
  if (second === clfSecond) return clfText

  const date = new Date(second * 1000)
  const pad = (value: number) => String(value).padStart(2, '0')
  const clock = [date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()].map(pad)
  clfText = `${pad(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${clock.join(':')} +0000`
  clfSecond = second
  return clfText
}

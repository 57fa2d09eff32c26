import { randomUUID } from 'node:crypto'
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger'
import { clientIp, type TrustedProxies } from '../lib/client-ip.ts'
import { getConfig } from '../lib/config.ts'
import {
  HttpError,
  notFound,
  payloadTooLarge,
  serviceUnavailable,
  toProblem,
} from '../lib/errors.ts'
import { createLogger } from '../lib/logger.ts'
import { correlationIdFrom } from '../lib/middleware/correlation.ts'
import {
  functions as allFunctions,
  routes as allRoutes,
  type FunctionSpec,
  type HttpMethod,
  type Route,
} from '../lib/routes.ts'
import { buildEvent, plainAddress, rawRequestFrom, splitTarget } from './event.ts'
import { createInvoker, type InvokeOutcome, type Invoker } from './invoker.ts'
import {
  MalformedResultError,
  problemReply,
  type Reply,
  replyFromResult,
  withCorrelationId,
  writeReply,
} from './result.ts'
import { createRouter } from './router.ts'

/** What the gateway logs through: the Powertools logger, or a test's own. */
export type Logger = Pick<PowertoolsLogger, 'info' | 'warn' | 'error'>

export type GatewayOptions = {
  host: string
  port: number
  invoker?: Invoker
  logger?: Logger
  /** The route table; `lib/routes.ts` by default (tests pass their own). */
  routes?: readonly Route[]
  functions?: readonly FunctionSpec[]
  /** `GATEWAY_MAX_BODY_BYTES` from config by default. */
  maxBodyBytes?: number
  /** How long `close()` waits for requests in flight before cutting connections. */
  drainTimeoutMs?: number
  /** `TRUSTED_PROXIES` from config by default; decides the access line's `client_ip`. */
  trustedProxies?: TrustedProxies
}

export type Gateway = { url: string; port: number; close(): Promise<void> }

/** What one request came to, for the response and the access line. */
type Served = {
  reply: Reply
  requestId: string
  route?: Route
  functionName?: string
  tooLarge?: boolean
  clientGone?: boolean
}

const EMPTY_BODY = Buffer.alloc(0)
const TOO_LARGE = Symbol('too large')
const CLIENT_GONE = Symbol('client gone')
const DEFAULT_DRAIN_MS = 10_000
// After a 413 the rest of the upload is read and dropped for this long, so the client
// sees the answer instead of a reset, then the connection is cut.
const LINGER_MS = 2_000

/**
 * Starts the local API gateway: matches the route, builds a payload 2.0 event that keeps
 * the request's bytes, invokes the route's function, and writes its result as HTTP.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const logger = options.logger ?? createLogger('gateway')
  const handle = createRequestHandler(options, logger)
  const server = createServer({ keepAlive: true, noDelay: true }, handle.onRequest)
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) =>
    answerUnparsable(error, socket, logger),
  )

  await listen(server, options.host, options.port)
  const { port } = server.address() as AddressInfo
  const url = `http://${urlHost(options.host)}:${port}`

  async function close(): Promise<void> {
    handle.startClosing()
    await closeServer(server, options.drainTimeoutMs ?? DEFAULT_DRAIN_MS)
  }

  return { url, port, close }
}

const PARSER_STATUS: Record<string, number> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
}

/**
 * A request Node's HTTP parser refuses (bad framing, oversized headers, an unknown
 * method) never reaches a handler; it still gets a problem document, a correlation id
 * and an access line.
 */
function answerUnparsable(error: NodeJS.ErrnoException, socket: Duplex, logger: Logger) {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  const status = PARSER_STATUS[error.code ?? ''] ?? 400
  const correlationId = randomUUID()
  const problem = toProblem(
    new HttpError(status, status === 431 ? 'headers_too_large' : 'malformed_request', {
      detail: 'The request could not be parsed as HTTP/1.1',
    }),
    correlationId,
  )
  const body = JSON.stringify(problem)
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
      'content-type: application/problem+json\r\n' +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      `x-correlation-id: ${correlationId}\r\nconnection: close\r\n\r\n${body}`,
  )
  logger.info('request', {
    correlation_id: correlationId,
    route: 'unmatched',
    status,
    parser_error: error.code,
    client_ip: plainAddress((socket as Socket).remoteAddress ?? ''),
  })
}

function createRequestHandler(options: GatewayOptions, logger: Logger) {
  const trustedProxies = options.trustedProxies ?? getConfig().TRUSTED_PROXIES
  const routes = options.routes ?? allRoutes
  const functionsByName = indexFunctions(routes, options.functions ?? allFunctions)
  const router = createRouter(routes)
  const invoker = options.invoker ?? createInvoker('in-process')
  const maxBodyBytes = options.maxBodyBytes ?? getConfig().GATEWAY_MAX_BODY_BYTES
  let closing = false

  async function respond(
    request: IncomingMessage,
    correlationId: string,
  ): Promise<Served> {
    const { rawPath } = splitTarget(request.url ?? '/')
    const match = router.match(request.method ?? 'GET', rawPath)
    if (match.kind === 'not-found') {
      return refusal(notFound(`No route for ${rawPath}`), correlationId)
    }
    if (match.kind === 'method-not-allowed') {
      return refusal(methodNotAllowed(match.allow), correlationId)
    }

    const body = await readBody(request, maxBodyBytes)
    if (body === CLIENT_GONE) return clientGone()
    if (body === TOO_LARGE) {
      const refused = refusal(bodyTooLarge(maxBodyBytes), correlationId)
      return { ...refused, route: match.route, tooLarge: true }
    }

    const fn = functionsByName.get(match.route.function) as FunctionSpec
    const event = buildEvent(rawRequestFrom(request, body), match)
    const outcome = await invoker.invoke(fn, event, fn.timeoutMs)

    const reply = replyForOutcome(outcome, fn, correlationId, logger)
    const { requestId } = event.requestContext
    return { reply, requestId, route: match.route, functionName: fn.name }
  }

  async function onRequest(
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    const started = performance.now()
    const correlationId = correlationIdFrom(
      firstValue(request.headers['x-correlation-id']),
    )

    const served = await respond(request, correlationId).catch((error: unknown) =>
      failedInGateway(error, correlationId, logger),
    )
    const reply = withCorrelationId(served.reply, correlationId)
    if (served.clientGone || response.destroyed) {
      logger.info(
        'request',
        accessFields(
          request,
          { ...reply, statusCode: 499 },
          served,
          started,
          trustedProxies,
        ),
      )
      return
    }

    if (closing || served.tooLarge) reply.headers.connection = 'close'
    writeReply(response, reply)
    if (served.tooLarge) lingerAndClose(request, response)

    logger.info('request', accessFields(request, reply, served, started, trustedProxies))
  }

  return {
    onRequest,
    startClosing: () => {
      closing = true
    },
  }
}

function indexFunctions(
  routes: readonly Route[],
  functions: readonly FunctionSpec[],
): Map<string, FunctionSpec> {
  const byName = new Map(functions.map((fn) => [fn.name, fn]))
  for (const route of routes) {
    if (!byName.has(route.function)) {
      throw new Error(
        `route ${route.method} ${route.path} names unknown function ${route.function}`,
      )
    }
  }
  return byName
}

function replyForOutcome(
  outcome: InvokeOutcome,
  fn: FunctionSpec,
  correlationId: string,
  logger: Logger,
): Reply {
  switch (outcome.kind) {
    case 'result':
      return replyFromFunction(outcome.result, fn, correlationId, logger)
    case 'error':
      logger.error('function failed', {
        target: fn.name,
        correlation_id: correlationId,
        error: outcome.error,
      })
      return problemReply(functionFailed(), correlationId)
    case 'timeout':
      logger.error('function timed out', {
        target: fn.name,
        correlation_id: correlationId,
        timeout_ms: fn.timeoutMs,
      })
      return problemReply(functionTimedOut(fn.timeoutMs), correlationId)
    case 'unavailable':
      logger.error('function unavailable', {
        target: fn.name,
        correlation_id: correlationId,
        reason: outcome.reason,
      })
      return problemReply(functionUnavailable(), correlationId)
    case 'busy':
      logger.warn('function busy', {
        function: fn.name,
        correlation_id: correlationId,
        waited_ms: outcome.waitedMs,
      })
      return problemReply(functionBusy(), correlationId)
  }
}

function replyFromFunction(
  result: unknown,
  fn: FunctionSpec,
  correlationId: string,
  logger: Logger,
): Reply {
  try {
    return replyFromResult(result)
  } catch (error) {
    if (!(error instanceof MalformedResultError)) throw error
    logger.error('function result malformed', {
      target: fn.name,
      correlation_id: correlationId,
      error,
    })
    return problemReply(invalidResult(), correlationId)
  }
}

function refusal(error: HttpError, correlationId: string): Served {
  return { reply: problemReply(error, correlationId), requestId: randomUUID() }
}

// Logged as 499, nginx's "client closed request": nobody is left to read an answer.
function clientGone(): Served {
  const reply = { statusCode: 499, headers: {}, body: EMPTY_BODY }
  return { reply, requestId: randomUUID(), clientGone: true }
}

function failedInGateway(error: unknown, correlationId: string, logger: Logger): Served {
  logger.error('gateway failed', { correlation_id: correlationId, error })
  return {
    reply: problemReply(new HttpError(500, 'internal_error'), correlationId),
    requestId: randomUUID(),
  }
}

// The gateway's own answers, as API Gateway gives them.

function methodNotAllowed(allow: HttpMethod[]): HttpError {
  return new HttpError(405, 'method_not_allowed', {
    detail: `This path answers ${allow.join(', ')}`,
    headers: { Allow: allow.join(', ') },
  })
}

function bodyTooLarge(limit: number): HttpError {
  return payloadTooLarge('payload_too_large', `The request body exceeds ${limit} bytes`, {
    limit,
  })
}

function functionFailed(): HttpError {
  return new HttpError(502, 'function_error', {
    detail: 'The function failed while handling the request',
    expose: true,
  })
}

function invalidResult(): HttpError {
  return new HttpError(502, 'invalid_function_result', {
    detail: 'The function returned a result the gateway cannot send',
    expose: true,
  })
}

function functionTimedOut(timeoutMs: number): HttpError {
  return new HttpError(504, 'function_timeout', {
    detail: `The function did not answer within ${timeoutMs} ms`,
    expose: true,
  })
}

function functionBusy(): HttpError {
  return new HttpError(503, 'function_busy', {
    detail: 'The function is busy; try again shortly',
    expose: true,
    headers: { 'Retry-After': '1' },
  })
}

function functionUnavailable(): HttpError {
  return serviceUnavailable('function_unavailable', 'The function cannot be reached')
}

// Request bodies

function hasBody(request: IncomingMessage): boolean {
  const length = request.headers['content-length']
  return (
    request.headers['transfer-encoding'] !== undefined ||
    (length !== undefined && length !== '0')
  )
}

/**
 * Reads the body up to `limit` bytes. Past it, reading stops and nothing more is kept:
 * a declared Content-Length over the limit is refused before a byte is read. A client
 * that disconnects mid-body is not an error of the gateway's.
 */
function readBody(
  request: IncomingMessage,
  limit: number,
): Promise<Buffer | typeof TOO_LARGE | typeof CLIENT_GONE> {
  if (!hasBody(request)) return Promise.resolve(EMPTY_BODY)
  if (Number(request.headers['content-length']) > limit) {
    request.pause()
    return Promise.resolve(TOO_LARGE)
  }

  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0

    function onData(chunk: Buffer): void {
      size += chunk.length
      if (size <= limit) {
        chunks.push(chunk)
        return
      }
      stop()
      request.pause()
      resolve(TOO_LARGE)
    }
    function onEnd(): void {
      stop()
      resolve(Buffer.concat(chunks, size))
    }
    function onAbort(): void {
      stop()
      resolve(CLIENT_GONE)
    }
    function stop(): void {
      request
        .off('data', onData)
        .off('end', onEnd)
        .off('error', onAbort)
        .off('close', onAbort)
    }

    request.on('data', onData).on('end', onEnd).on('error', onAbort).on('close', onAbort)
  })
}

/** Drops the rest of a refused upload for a bounded time, then cuts the connection. */
function lingerAndClose(request: IncomingMessage, response: ServerResponse): void {
  response.once('finish', () => {
    const timer = setTimeout(() => request.socket.destroy(), LINGER_MS)
    timer.unref()
    request.socket.once('close', () => clearTimeout(timer))
    request.resume()
  })
}

// Server lifecycle

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

/** Stops accepting, lets requests in flight finish (bounded), then resolves. */
function closeServer(server: Server, drainTimeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), drainTimeoutMs)
    server.close(() => {
      clearTimeout(timer)
      resolve()
    })
    server.closeIdleConnections()
  })
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

// Logging

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function accessFields(
  request: IncomingMessage,
  reply: Reply,
  served: Served,
  started: number,
  trustedProxies: TrustedProxies,
): Record<string, unknown> {
  return {
    correlation_id: firstValue(reply.headers['x-correlation-id']),
    request_id: served.requestId,
    target: served.functionName,
    method: request.method,
    // A line for a path no route matches still groups under one label.
    route: served.route?.path ?? 'unmatched',
    path: splitTarget(request.url ?? '/').rawPath,
    status: reply.statusCode,
    latency_ms: Math.round((performance.now() - started) * 100) / 100,
    client_ip: clientIp(
      plainAddress(request.socket.remoteAddress ?? ''),
      request.headers['x-forwarded-for'],
      trustedProxies,
    ),
  }
}

// Direct start: `node local/gateway.ts` (`npm start` goes through local/start.ts instead).

async function main(): Promise<void> {
  const config = getConfig()
  const logger = createLogger('gateway')
  const gateway = await startGateway({
    host: config.HOST,
    port: config.PORT,
    invoker: createInvoker(config.INVOKE_MODE),
    logger,
  })
  logger.info('gateway listening', { url: gateway.url, invoke_mode: config.INVOKE_MODE })

  const stop = () => gateway.close().then(() => process.exit(0))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

if (import.meta.main) await main()

import { type IncomingHttpHeaders, type IncomingMessage, request } from 'node:http'
import type { APIGatewayProxyEventV2 } from 'aws-lambda'
import { parseConfig } from '../../../lib/config.ts'
import { type Gateway, type Logger, startGateway } from '../../../local/gateway.ts'
import { createInvoker, type Invoker } from '../../../local/invoker.ts'
import { fixtureFunctions, fixtureRoutes } from './fixtures/table.ts'

export type LogLine = { level: string; message: string; fields: Record<string, unknown> }

export type TestGateway = Gateway & { lines: LogLine[] }

/** The limit the service is configured with when nothing overrides it. */
export const DEFAULT_MAX_BODY_BYTES = parseConfig({
  JWT_SECRET: 'a-test-secret-that-is-long-enough-for-config',
}).GATEWAY_MAX_BODY_BYTES

export function memoryLogger(lines: LogLine[]): Logger {
  const write =
    (level: string) =>
    (message: unknown, ...extra: unknown[]) => {
      const fields = (extra[0] ?? {}) as Record<string, unknown>
      lines.push({ level, message: String(message), fields })
    }
  return { info: write('info'), warn: write('warn'), error: write('error') }
}

/** A gateway on a free loopback port, running the fixture handlers in-process. */
export async function startTestGateway(
  options: { invoker?: Invoker; maxBodyBytes?: number } = {},
): Promise<TestGateway> {
  const lines: LogLine[] = []
  const gateway = await startGateway({
    host: '127.0.0.1',
    port: 0,
    invoker: options.invoker ?? createInvoker('in-process'),
    logger: memoryLogger(lines),
    routes: fixtureRoutes,
    functions: fixtureFunctions,
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
  })
  return Object.assign(gateway, { lines })
}

export type RawResponse = {
  status: number
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: Buffer
}

export type SendOptions = {
  method?: string
  /** Sent exactly as given: no normalisation of the path or the query. */
  path: string
  /** Raw header list (name, value, name, value...) so duplicates reach the wire. */
  headers?: string[]
  body?: Buffer | string
}

/** An answer with all its bytes. */
export function collect(response: IncomingMessage): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    response.on('data', (chunk: Buffer) => chunks.push(chunk))
    response.on('end', () =>
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        rawHeaders: response.rawHeaders,
        body: Buffer.concat(chunks),
      }),
    )
    response.on('error', reject)
  })
}

/** One HTTP request over loopback, keeping the answer's bytes. */
export function send(baseUrl: string, options: SendOptions): Promise<RawResponse> {
  const { hostname, port, host } = new URL(baseUrl)
  // A raw header list goes out as given, so the Host header HTTP/1.1 requires is added here.
  const headers = ['Host', host, ...(options.headers ?? [])]
  return new Promise((resolve, reject) => {
    const outgoing = request(
      { hostname, port, method: options.method ?? 'GET', path: options.path, headers },
      (response) => collect(response).then(resolve, reject),
    )
    outgoing.on('error', reject)
    outgoing.end(options.body)
  })
}

export function json<T = Record<string, unknown>>(response: RawResponse): T {
  return JSON.parse(response.body.toString('utf8')) as T
}

/** The event the echo fixture received. */
export function echoedEvent(response: RawResponse): APIGatewayProxyEventV2 {
  return json<{ event: APIGatewayProxyEventV2 }>(response).event
}

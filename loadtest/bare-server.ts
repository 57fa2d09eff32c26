/**
 * The baseline of `npm run bench`: a bare `node:http` server that calls the health
 * function's handler with a minimal payload 2.0 event, with none of the gateway's work
 * (route matching, the full event, body reading, result checking, access line).
 *
 *   PORT=0 node loadtest/bare-server.ts     (prints `listening <port>`)
 */
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { APIGatewayProxyEventV2 } from 'aws-lambda'
import { handler } from '../handlers/health.ts'
import { functionSpec } from '../lib/routes.ts'
import { lambdaContext } from '../local/invoker.ts'

type Result = { statusCode?: number; headers?: Record<string, string>; body?: string }

const spec = functionSpec('health')

const server = createServer(
  { keepAlive: true, noDelay: true },
  async (request, response) => {
    const event = {
      version: '2.0',
      routeKey: 'GET /health',
      rawPath: request.url ?? '/',
      rawQueryString: '',
      headers: request.headers as Record<string, string>,
      requestContext: {
        http: {
          method: request.method ?? 'GET',
          path: request.url ?? '/',
          protocol: 'HTTP/1.1',
          sourceIp: request.socket.remoteAddress ?? '',
          userAgent: '',
        },
        requestId: randomUUID(),
      },
      isBase64Encoded: false,
    } as unknown as APIGatewayProxyEventV2
    const result = (await handler(event, lambdaContext(spec, spec.timeoutMs))) as Result

    response.writeHead(result.statusCode ?? 200, result.headers)
    response.end(result.body)
  },
)

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening ${(server.address() as AddressInfo).port}`)
})

// Keep-alive connections would hold close() open for as long as the client stays.
process.once('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
})

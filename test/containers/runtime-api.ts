// A minimal Lambda Runtime API on loopback, standing in for Lambda (or the RIE, which
// cannot be fetched here): it hands queued events to the runtime client on
// `invocation/next` and records what the client posts back.
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

const PREFIX = '/2018-06-01/runtime'

export type Reply = { requestId: string; kind: 'response' | 'error'; body: unknown }

export type RuntimeApi = {
  /** host:port, the value of AWS_LAMBDA_RUNTIME_API. */
  address: string
  /** Queues an event; resolves with what the function answered. */
  invoke(event: unknown, timeoutMs: number): Promise<Reply>
  initErrors: unknown[]
  close(): Promise<void>
}

type Pending = { requestId: string; event: unknown; settle: (reply: Reply) => void }

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString('utf8')
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

export async function startRuntimeApi(functionName: string): Promise<RuntimeApi> {
  const queue: Pending[] = []
  const waiting: ServerResponse[] = []
  const inFlight = new Map<string, Pending>()
  const initErrors: unknown[] = []

  function deliver(): void {
    while (queue.length > 0 && waiting.length > 0) {
      const next = queue.shift() as Pending
      const response = waiting.shift() as ServerResponse
      inFlight.set(next.requestId, next)
      response.writeHead(200, {
        'content-type': 'application/json',
        'lambda-runtime-aws-request-id': next.requestId,
        'lambda-runtime-deadline-ms': String(Date.now() + 30_000),
        'lambda-runtime-invoked-function-arn': `arn:aws:lambda:us-east-1:000000000000:function:${functionName}`,
        'lambda-runtime-trace-id': `Root=1-${Date.now().toString(16)}-${randomUUID().replaceAll('-', '').slice(0, 24)};Sampled=0`,
      })
      response.end(JSON.stringify(next.event))
    }
  }

  async function handle(
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    const url = request.url ?? ''
    if (request.method === 'GET' && url === `${PREFIX}/invocation/next`) {
      // Long poll: held open until an event is queued, as Lambda does.
      waiting.push(response)
      deliver()
      return
    }
    const posted = url.match(
      /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/,
    )
    if (request.method === 'POST' && posted) {
      const [, requestId = '', kind] = posted
      const body = await readJson(request)
      const pending = inFlight.get(requestId)
      inFlight.delete(requestId)
      pending?.settle({ requestId, kind: kind as Reply['kind'], body })
      response.writeHead(pending ? 202 : 400).end()
      return
    }
    if (request.method === 'POST' && url === `${PREFIX}/init/error`) {
      initErrors.push(await readJson(request))
      response.writeHead(202).end()
      return
    }
    response.writeHead(404).end()
  }

  const server = createServer((request, response) => {
    handle(request, response).catch(() => response.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  function invoke(event: unknown, timeoutMs: number): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`no answer from the runtime client within ${timeoutMs} ms`)),
        timeoutMs,
      )
      queue.push({
        requestId: randomUUID(),
        event,
        settle: (reply) => {
          clearTimeout(timer)
          resolve(reply)
        },
      })
      deliver()
    })
  }

  async function close(): Promise<void> {
    for (const response of waiting.splice(0)) response.destroy()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }

  return { address: `127.0.0.1:${port}`, invoke, initErrors, close }
}

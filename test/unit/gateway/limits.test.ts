import { request } from 'node:http'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { heldRequests } from './fixtures/held.ts'
import {
  collect,
  DEFAULT_MAX_BODY_BYTES,
  json,
  type RawResponse,
  send,
  startTestGateway,
  type TestGateway,
} from './support.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

let gateway: TestGateway

beforeAll(async () => {
  gateway = await startTestGateway()
})

afterAll(async () => {
  await gateway.close()
})

function expectProblem(response: RawResponse, status: number, code: string): void {
  expect(response.status).toBe(status)
  expect(response.headers['content-type']).toBe('application/problem+json')
  expect(response.headers['x-correlation-id']).toBeTruthy()
  expect(json(response)).toMatchObject({
    status,
    code,
    correlationId: response.headers['x-correlation-id'],
  })
}

describe('the answers the gateway gives itself', () => {
  it('answers an unknown route with a 404 problem', async () => {
    const response = await send(gateway.url, { path: '/nowhere/at/all' })

    expectProblem(response, 404, 'not_found')
  })

  it('never matches an empty path parameter', async () => {
    const response = await send(gateway.url, { path: '/items//parts/x' })

    expectProblem(response, 404, 'not_found')
  })

  it('answers a known path under another method with 405 and Allow', async () => {
    const response = await send(gateway.url, { method: 'PUT', path: '/items/7' })

    expectProblem(response, 405, 'method_not_allowed')
    expect(response.headers.allow).toBe('GET, DELETE')
  })

  it('answers a declared body over the 10 MB limit with 413 without reading it', async () => {
    const body = Buffer.alloc(DEFAULT_MAX_BODY_BYTES + 1, 0x61)

    const response = await send(gateway.url, {
      method: 'POST',
      path: '/echo',
      headers: ['Content-Type', 'application/octet-stream'],
      body,
    })

    expect(DEFAULT_MAX_BODY_BYTES).toBe(10 * 1024 * 1024)
    expectProblem(response, 413, 'payload_too_large')
    expect(response.headers.connection).toBe('close')
  })

  it('answers a chunked body that grows past the limit with 413', async () => {
    const small = await startTestGateway({ maxBodyBytes: 64 * 1024 })

    const response = await sendChunked(small.url, 16, 16 * 1024)
    await small.close()

    expectProblem(response, 413, 'payload_too_large')
    expect(small.lines.some((line) => line.fields.status === 413)).toBe(true)
  })

  it('accepts a body of exactly the limit', async () => {
    const small = await startTestGateway({ maxBodyBytes: 64 * 1024 })

    const response = await send(small.url, {
      method: 'POST',
      path: '/echo',
      headers: ['Content-Type', 'application/octet-stream'],
      body: Buffer.alloc(64 * 1024, 1),
    })
    await small.close()

    expect(response.status).toBe(200)
    expect(json<{ size: number }>(response).size).toBe(64 * 1024)
  })

  it('answers a handler running past its timeout with 504', async () => {
    const started = performance.now()

    const response = await send(gateway.url, { path: '/slow' })

    expectProblem(response, 504, 'function_timeout')
    expect(performance.now() - started).toBeGreaterThanOrEqual(290)
  })

  it('answers a thrown error with a 502 problem that leaks nothing', async () => {
    const response = await send(gateway.url, { path: '/throws' })

    expectProblem(response, 502, 'function_error')
    const text = response.body.toString('utf8')
    expect(text).not.toContain('hunter2')
    expect(text).not.toContain('errorType')
  })

  it('logs the thrown error at error level with the function name', async () => {
    const correlationId = 'trace-the-failure'

    await send(gateway.url, {
      path: '/throws',
      headers: ['X-Correlation-ID', correlationId],
    })

    const failure = gateway.lines.find(
      (line) => line.level === 'error' && line.fields.correlation_id === correlationId,
    )
    expect(failure?.fields.target).toBe('throws')
    expect(failure?.fields.error).toBeInstanceOf(Error)
  })
})

describe('a client that goes away', () => {
  it('is logged as 499 when it disconnects in the middle of its body', async () => {
    const { hostname, port } = new URL(gateway.url)
    const socket = connect(Number(port), hostname)
    await new Promise((resolve) => socket.once('connect', resolve))

    socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nX-Correlation-ID: gone-early\r\n')
    socket.end('Content-Length: 1000\r\n\r\nonly ten b')
    socket.destroy()

    await waitFor(() =>
      gateway.lines.some((line) => line.fields.correlation_id === 'gone-early'),
    )
    const line = gateway.lines.find(
      (entry) => entry.fields.correlation_id === 'gone-early',
    )
    expect(line?.fields).toMatchObject({ status: 499, route: 'unmatched' })
    expect(line?.fields.target).toBeUndefined()
  })
})

describe('correlation ids on gateway errors', () => {
  it('echoes a well-formed incoming X-Correlation-ID', async () => {
    const correlationId = 'Req-2026.12_04-abc'

    const responses = await Promise.all(
      ['/nowhere', '/throws', '/slow'].map((path) =>
        send(gateway.url, { path, headers: ['X-Correlation-ID', correlationId] }),
      ),
    )

    for (const response of responses) {
      expect(response.headers['x-correlation-id']).toBe(correlationId)
      expect(json(response).correlationId).toBe(correlationId)
    }
  })

  it('replaces a malformed or overlong X-Correlation-ID with a new UUID', async () => {
    const malformed = ['has spaces', 'semi;colon', 'x'.repeat(129)]

    const responses = await Promise.all(
      malformed.map((value) =>
        send(gateway.url, { path: '/nowhere', headers: ['X-Correlation-ID', value] }),
      ),
    )

    for (const response of responses)
      expect(response.headers['x-correlation-id']).toMatch(UUID)
  })

  it('accepts an id of exactly 128 characters', async () => {
    const correlationId = 'a'.repeat(128)

    const response = await send(gateway.url, {
      path: '/nowhere',
      headers: ['X-Correlation-ID', correlationId],
    })

    expect(response.headers['x-correlation-id']).toBe(correlationId)
  })
})

describe('the access line', () => {
  it('logs one line per request with the fields dashboards query', async () => {
    const correlationId = 'access-line-check'

    await send(gateway.url, {
      path: '/items/9?x=1',
      headers: ['X-Correlation-ID', correlationId],
    })

    const lines = gateway.lines.filter(
      (line) =>
        line.message === 'request' && line.fields.correlation_id === correlationId,
    )
    expect(lines).toHaveLength(1)
    expect(lines[0]?.fields).toMatchObject({
      correlation_id: correlationId,
      method: 'GET',
      route: '/items/{id}',
      path: '/items/9',
      status: 200,
      target: 'echo',
      client_ip: '127.0.0.1',
    })
    expect(lines[0]?.fields.request_id).toMatch(UUID)
    expect(lines[0]?.fields.latency_ms).toBeTypeOf('number')
  })
})

describe('closing', () => {
  it('lets a request in flight finish, refuses new ones, then resolves', async () => {
    const own = await startTestGateway()
    const inFlight = send(own.url, { path: '/held' })
    await waitFor(() => heldRequests().waiting.length === 1)

    const closing = own.close()
    const refused = send(own.url, { path: '/echo' })
    for (const release of heldRequests().waiting.splice(0)) release()
    const response = await inFlight
    await closing

    expect(response.status).toBe(200)
    expect(response.body.toString('utf8')).toBe('released')
    expect(response.headers.connection).toBe('close')
    await expect(refused).rejects.toThrow(/ECONNREFUSED/)
  })
})

/** Polls a condition until it holds, failing past the deadline. */
async function waitFor(condition: () => boolean, deadlineMs = 5_000): Promise<void> {
  const deadline = performance.now() + deadlineMs
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Streams `count` chunks without a Content-Length, as a client that does not know the size. */
function sendChunked(
  baseUrl: string,
  count: number,
  chunkSize: number,
): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrl)
  return new Promise((resolve, reject) => {
    const outgoing = request(
      {
        hostname,
        port,
        method: 'POST',
        path: '/echo',
        headers: {
          'content-type': 'application/octet-stream',
          'transfer-encoding': 'chunked',
        },
      },
      (response) => collect(response).then(resolve, reject),
    )
    outgoing.on('error', reject)
    for (let index = 0; index < count; index++) outgoing.write(Buffer.alloc(chunkSize, 2))
    outgoing.end()
  })
}

import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import type { APIGatewayProxyEventV2 } from 'aws-lambda'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createInvoker, parseRieEndpoints } from '../../../local/invoker.ts'
import { json, send, startTestGateway, type TestGateway } from './support.ts'

const INVOCATIONS = '/2015-03-31/functions/function/invocations'

type FakeRie = {
  url: string
  received: { method?: string; url?: string }[]
  server: Server
}

/** Answers invocations the ways a real RIE does, picked by the event's path. */
function answer(event: APIGatewayProxyEventV2, response: ServerResponse): void {
  switch (event.rawPath) {
    case '/echo':
      response.end(
        JSON.stringify({ statusCode: 200, body: `via rie: ${event.routeKey}` }),
      )
      return
    case '/throws':
      response.end(
        JSON.stringify({ errorType: 'TypeError', errorMessage: 'boom', trace: [] }),
      )
      return
    case '/slow':
      response.end('Task timed out after 0.30 seconds')
      return
    default:
      response.end()
  }
}

async function startFakeRie(): Promise<FakeRie> {
  const received: FakeRie['received'] = []
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    received.push({ method: request.method, url: request.url })
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () =>
      answer(JSON.parse(Buffer.concat(chunks).toString('utf8')), response),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, received, server }
}

let rie: FakeRie
let gateway: TestGateway

beforeAll(async () => {
  rie = await startFakeRie()
  gateway = await startTestGateway({
    invoker: createInvoker('rie', { endpoints: `api=${rie.url}` }),
  })
})

afterAll(async () => {
  await gateway.close()
  await new Promise((resolve) => rie.server.close(resolve))
})

describe('the rie invoker', () => {
  it('posts the event to the invocations path and sends the result', async () => {
    const response = await send(gateway.url, { path: '/echo' })

    expect(response.status).toBe(200)
    expect(response.body.toString('utf8')).toBe('via rie: GET /echo')
    expect(rie.received.at(-1)).toEqual({ method: 'POST', url: INVOCATIONS })
  })

  it('answers an {errorType, errorMessage} document with 502, never 200', async () => {
    const response = await send(gateway.url, { path: '/throws' })

    expect(response.status).toBe(502)
    expect(json(response)).toMatchObject({ code: 'function_error' })
    expect(response.body.toString('utf8')).not.toContain('boom')
  })

  it('answers a "Task timed out" text with 504', async () => {
    const response = await send(gateway.url, { path: '/slow' })

    expect(response.status).toBe(504)
    expect(json(response)).toMatchObject({ code: 'function_timeout' })
  })

  it('answers an empty body, a crashed runtime, with 502', async () => {
    const response = await send(gateway.url, { path: '/plain' })

    expect(response.status).toBe(502)
    expect(json(response)).toMatchObject({ code: 'function_error' })
  })

  it('answers 503 when the endpoint does not accept connections', async () => {
    const closed = await startFakeRie()
    await new Promise((resolve) => closed.server.close(resolve))
    const own = await startTestGateway({
      invoker: createInvoker('rie', { endpoints: `*=${closed.url}` }),
    })

    const response = await send(own.url, { path: '/echo' })
    await own.close()

    expect(response.status).toBe(503)
    expect(json(response)).toMatchObject({ code: 'function_unavailable' })
  })

  it('answers 503 for a function with no endpoint configured', async () => {
    const own = await startTestGateway({
      invoker: createInvoker('rie', { endpoints: '' }),
    })

    const response = await send(own.url, { path: '/echo' })
    await own.close()

    expect(response.status).toBe(503)
    expect(response.headers['retry-after']).toBe('5')
  })
})

describe('RIE_ENDPOINTS', () => {
  it('prefers a function name over its group, and the group over *', () => {
    const endpoints = parseRieEndpoints(
      ' documents=http://127.0.0.1:9001, documents-get=http://127.0.0.1:9002,*=http://127.0.0.1:9009 ',
    )

    expect(endpoints.byKey.get('documents')?.port).toBe('9001')
    expect(endpoints.byKey.get('documents-get')?.port).toBe('9002')
    expect(endpoints.fallback?.port).toBe('9009')
  })

  it('is empty when unset', () => {
    const endpoints = parseRieEndpoints('')

    expect(endpoints.byKey.size).toBe(0)
    expect(endpoints.fallback).toBeUndefined()
  })

  it('refuses an unknown key, a missing URL and a non-HTTP URL', () => {
    expect(() => parseRieEndpoints('documnets=http://127.0.0.1:9001')).toThrow(
      /documnets/,
    )
    expect(() => parseRieEndpoints('documents')).toThrow(/key=url/)
    expect(() => parseRieEndpoints('auth=ftp://127.0.0.1:21')).toThrow(/http/)
  })
})

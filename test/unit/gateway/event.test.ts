import { createHash, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { echoedEvent, json, send, startTestGateway, type TestGateway } from './support.ts'

let gateway: TestGateway

beforeAll(async () => {
  gateway = await startTestGateway()
})

afterAll(async () => {
  await gateway.close()
})

describe('the event the gateway builds', () => {
  it('lower-cases header names, joins duplicates with commas and keeps underscores', async () => {
    const headers = [
      'X-Custom',
      'one',
      'x-custom',
      'two',
      'X_Under_Score',
      'kept',
      'Accept',
      'a/b',
    ]

    const response = await send(gateway.url, { path: '/echo', headers })

    const event = echoedEvent(response)
    expect(event.headers['x-custom']).toBe('one,two')
    expect(event.headers.x_under_score).toBe('kept')
    expect(event.headers.accept).toBe('a/b')
    expect(Object.keys(event.headers).every((name) => name === name.toLowerCase())).toBe(
      true,
    )
  })

  it('splits every Cookie header on semicolons into cookies, unvalidated', async () => {
    const headers = ['Cookie', 'a=1; b=two words ;;c', 'Cookie', ' d=%zz; =odd']

    const response = await send(gateway.url, { path: '/echo', headers })

    const event = echoedEvent(response)
    expect(event.cookies).toEqual(['a=1', 'b=two words', 'c', 'd=%zz', '=odd'])
    expect(event.headers.cookie).toBeUndefined()
  })

  it('has no cookies field when the request sent none', async () => {
    const response = await send(gateway.url, { path: '/echo' })

    expect(echoedEvent(response).cookies).toBeUndefined()
  })

  it('keeps rawPath and rawQueryString exactly as sent, percent-encodings included', async () => {
    const path =
      '/items/caf%C3%A9%2Fx%20y/parts/p%2b1?q=a%20b&q=c+d&e=%E2%82%AC&flag&x=%zz'

    const response = await send(gateway.url, { path })

    const event = echoedEvent(response)
    expect(event.rawPath).toBe('/items/caf%C3%A9%2Fx%20y/parts/p%2b1')
    expect(event.rawQueryString).toBe('q=a%20b&q=c+d&e=%E2%82%AC&flag&x=%zz')
    expect(event.requestContext.http.path).toBe(event.rawPath)
  })

  it('decodes query parameters and joins repeated keys with commas', async () => {
    const response = await send(gateway.url, {
      path: '/echo?q=a%20b&q=c+d&e=%E2%82%AC&flag&x=%zz',
    })

    expect(echoedEvent(response).queryStringParameters).toEqual({
      q: 'a b,c d',
      e: '€',
      flag: '',
      x: '%zz',
    })
  })

  it('has no queryStringParameters and an empty rawQueryString without a query', async () => {
    const event = echoedEvent(await send(gateway.url, { path: '/echo' }))

    expect(event.rawQueryString).toBe('')
    expect(event.queryStringParameters).toBeUndefined()
    expect(event.pathParameters).toBeUndefined()
  })

  it('decodes path parameters, an encoded slash staying inside its segment', async () => {
    const response = await send(gateway.url, {
      path: '/items/caf%C3%A9%2Fx%20y/parts/p%2b1',
    })

    const event = echoedEvent(response)
    expect(event.pathParameters).toEqual({ id: 'café/x y', part: 'p+1' })
    expect(event.routeKey).toBe('GET /items/{id}/parts/{part}')
    expect(event.requestContext.routeKey).toBe('GET /items/{id}/parts/{part}')
  })

  it('carries a binary body as base64 that round-trips byte for byte', async () => {
    const bytes = randomBytes(256 * 1024)
    const sha256 = createHash('sha256').update(bytes).digest('hex')

    const response = await send(gateway.url, {
      method: 'POST',
      path: '/echo',
      headers: ['Content-Type', 'application/octet-stream'],
      body: bytes,
    })

    const echoed = json<{
      sha256: string
      size: number
      event: { isBase64Encoded: boolean }
    }>(response)
    expect(echoed.event.isBase64Encoded).toBe(true)
    expect(echoed.size).toBe(bytes.length)
    expect(echoed.sha256).toBe(sha256)
  })

  it('base64-encodes a body declared as text that is not valid UTF-8', async () => {
    const bytes = Buffer.from([0x68, 0x69, 0xff, 0xfe, 0x00])

    const response = await send(gateway.url, {
      method: 'POST',
      path: '/echo',
      headers: ['Content-Type', 'text/plain; charset=utf-8'],
      body: bytes,
    })

    const event = echoedEvent(response)
    expect(event.isBase64Encoded).toBe(true)
    expect(Buffer.from(event.body ?? '', 'base64').equals(bytes)).toBe(true)
  })

  it('passes a textual body as a UTF-8 string', async () => {
    const body = JSON.stringify({ name: 'Zoë', emoji: '📄' })

    const response = await send(gateway.url, {
      method: 'POST',
      path: '/echo',
      headers: ['Content-Type', 'application/json'],
      body,
    })

    const event = echoedEvent(response)
    expect(event.isBase64Encoded).toBe(false)
    expect(event.body).toBe(body)
  })

  it('has no body and isBase64Encoded false for an empty body', async () => {
    const response = await send(gateway.url, {
      method: 'POST',
      path: '/echo',
      headers: ['Content-Type', 'application/octet-stream', 'Content-Length', '0'],
    })

    const event = echoedEvent(response)
    expect(event.body).toBeUndefined()
    expect(event.isBase64Encoded).toBe(false)
  })

  it('gives every request its own requestId', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => send(gateway.url, { path: '/echo' })),
    )

    const ids = responses.map(
      (response) => echoedEvent(response).requestContext.requestId,
    )
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids[0]).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    )
  })

  it('takes sourceIp from the socket, not from forwarding headers', async () => {
    const headers = ['X-Forwarded-For', '203.0.113.9', 'X-Real-IP', '203.0.113.10']

    const response = await send(gateway.url, { path: '/echo', headers })

    const event = echoedEvent(response)
    expect(event.requestContext.http.sourceIp).toBe('127.0.0.1')
    expect(event.headers['x-forwarded-for']).toBe('203.0.113.9')
  })

  it('fills requestContext the way API Gateway does', async () => {
    const headers = ['User-Agent', 'gateway-test/1.0']

    const response = await send(gateway.url, {
      method: 'DELETE',
      path: '/items/42',
      headers,
    })

    const { requestContext, version } = echoedEvent(response)
    expect(version).toBe('2.0')
    expect(requestContext).toMatchObject({
      stage: '$default',
      routeKey: 'DELETE /items/{id}',
      domainName: '127.0.0.1',
      http: {
        method: 'DELETE',
        path: '/items/42',
        protocol: 'HTTP/1.1',
        userAgent: 'gateway-test/1.0',
      },
    })
    expect(requestContext.time).toMatch(
      /^\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000$/,
    )
    expect(Math.abs(requestContext.timeEpoch - Date.now())).toBeLessThan(5_000)
  })
})

describe('the context the function receives', () => {
  it('comes from a module loaded once and reused', async () => {
    const first = json<{ invocations: number }>(
      await send(gateway.url, { path: '/echo' }),
    )

    const second = json<{ invocations: number }>(
      await send(gateway.url, { path: '/echo' }),
    )

    expect(second.invocations).toBe(first.invocations + 1)
  })

  it('counts the remaining time down from the function timeout', async () => {
    const response = await send(gateway.url, { path: '/remaining' })

    const seen = json<{
      before: number
      after: number
      elapsed: number
      functionName: string
    }>(response)
    expect(seen.before).toBeLessThanOrEqual(2_000)
    expect(seen.before).toBeGreaterThan(1_500)
    expect(seen.before - seen.after).toBeGreaterThanOrEqual(Math.floor(seen.elapsed) - 1)
    expect(seen.functionName).toBe('remaining')
  })
})

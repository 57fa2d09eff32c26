import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { json, send, startTestGateway, type TestGateway } from './support.ts'

let gateway: TestGateway

beforeAll(async () => {
  gateway = await startTestGateway()
})

afterAll(async () => {
  await gateway.close()
})

function headerLines(rawHeaders: string[], name: string): string[] {
  const values: string[] = []
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    if (rawHeaders[index]?.toLowerCase() === name)
      values.push(rawHeaders[index + 1] as string)
  }
  return values
}

describe('how the gateway writes a function result', () => {
  it('sends one Set-Cookie header per cookies[] entry, commas and all', async () => {
    const response = await send(gateway.url, { path: '/cookies' })

    expect(headerLines(response.rawHeaders, 'set-cookie')).toEqual([
      'session=abc; Path=/; HttpOnly',
      'theme=dark, blue; Max-Age=60',
    ])
  })

  it('decodes a base64 body to its exact bytes', async () => {
    const response = await send(gateway.url, { path: '/cookies' })

    expect(response.status).toBe(201)
    expect([...response.body]).toEqual([0, 1, 2, 253, 254, 255])
    expect(response.headers['content-length']).toBe('6')
    expect(response.headers['content-type']).toBe('application/octet-stream')
  })

  it('writes headers and multiValueHeaders', async () => {
    const response = await send(gateway.url, { path: '/cookies' })

    expect(response.headers['x-fixture']).toBe('cookies')
    expect(headerLines(response.rawHeaders, 'x-multi')).toEqual(['one', 'two'])
  })

  it('answers a result without statusCode as 200 JSON of the value', async () => {
    const response = await send(gateway.url, { path: '/plain' })

    expect(response.status).toBe(200)
    expect(response.headers['content-type']).toBe('application/json')
    expect(json(response)).toEqual({ message: 'no status code', items: [1, 2] })
  })

  it('answers a bare string result as 200 JSON of the string', async () => {
    const response = await send(gateway.url, { path: '/plain?shape=string' })

    expect(response.status).toBe(200)
    expect(response.headers['content-type']).toBe('application/json')
    expect(response.body.toString('utf8')).toBe('"just text"')
  })

  it('answers a malformed result with a 502 problem document', async () => {
    const response = await send(gateway.url, { path: '/malformed' })

    expect(response.status).toBe(502)
    expect(response.headers['content-type']).toBe('application/problem+json')
    expect(json(response)).toMatchObject({ status: 502, code: 'invalid_function_result' })
  })

  it('adds the correlation id to a result that carries none', async () => {
    const response = await send(gateway.url, {
      path: '/plain',
      headers: ['X-Correlation-ID', 'client-chosen.id_1'],
    })

    expect(response.headers['x-correlation-id']).toBe('client-chosen.id_1')
  })
})

import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestGateway, type TestGateway } from './support.ts'

let gateway: TestGateway

beforeAll(async () => {
  gateway = await startTestGateway()
})

afterAll(async () => {
  await gateway?.close()
})

/** Writes bytes to the gateway's socket and reads all it answers until it closes. */
function exchange(raw: string): Promise<string> {
  const { hostname, port } = new URL(gateway.url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(raw))
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.on('error', reject)
  })
}

function parse(answer: string) {
  const [head = '', body = ''] = answer.split('\r\n\r\n')
  const [statusLine = '', ...headerLines] = head.split('\r\n')
  const headers = Object.fromEntries(
    headerLines.map((line) => {
      const colon = line.indexOf(':')
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()]
    }),
  )
  return { status: Number(statusLine.split(' ')[1]), headers, body }
}

describe('a request the HTTP parser refuses', () => {
  it.each([
    ['an unknown method', 'BREW /health HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a negative length', 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n'],
    [
      'a control character in a header',
      'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\u0001b\r\n\r\n',
    ],
  ])('answers %s with a 400 problem and a correlation id', async (_label, raw) => {
    const answer = parse(await exchange(raw))

    expect(answer.status).toBe(400)
    expect(answer.headers['content-type']).toBe('application/problem+json')
    expect(answer.headers['x-correlation-id']).toMatch(/^[0-9a-f-]{36}$/)
    expect(JSON.parse(answer.body)).toMatchObject({
      status: 400,
      code: 'malformed_request',
      correlationId: answer.headers['x-correlation-id'],
    })
  })

  it('answers headers over the size limit with a 431 problem and logs it', async () => {
    const raw = `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`

    const answer = parse(await exchange(raw))

    expect(answer.status).toBe(431)
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'headers_too_large' })
    const line = gateway.lines.find(
      (entry) => entry.fields.correlation_id === answer.headers['x-correlation-id'],
    )
    expect(line?.fields).toMatchObject({ status: 431, route: 'unmatched' })
  })
})

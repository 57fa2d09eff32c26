import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { createInvoker } from '../../../local/invoker.ts'
import {
  json,
  type RawResponse,
  send,
  startTestGateway,
  type TestGateway,
} from './support.ts'

/**
 * An RIE that, like the real one, runs one invocation at a time: it holds each answer
 * until the test releases it, and fails any invocation that arrives meanwhile.
 */
type HeldRie = {
  url: string
  server: Server
  /** Invocations received so far. */
  received: number
  /** Invocations that arrived while another was running. */
  overlapped: number
  /** Answers the invocation being held. */
  releaseOne(): void
  /** Resolves once `count` invocations have arrived. */
  arrived(count: number): Promise<void>
}

async function startHeldRie(): Promise<HeldRie> {
  const held: ServerResponse[] = []
  const waiters: { count: number; resolve: () => void }[] = []
  let running = 0

  const rie: HeldRie = {
    url: '',
    server: createServer((request: IncomingMessage, response: ServerResponse) => {
      if (running > 0) rie.overlapped++
      running++
      response.on('finish', () => running--)
      request.resume()
      // Counted once the whole event is read, when the answer can be released.
      request.on('end', () => {
        held.push(response)
        rie.received++
        for (const waiter of waiters.filter((item) => rie.received >= item.count)) {
          waiter.resolve()
        }
      })
    }),
    received: 0,
    overlapped: 0,
    releaseOne() {
      held.shift()?.end(JSON.stringify({ statusCode: 200, body: 'done' }))
    },
    arrived(count) {
      if (rie.received >= count) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ count, resolve }))
    },
  }
  await new Promise<void>((resolve) => rie.server.listen(0, '127.0.0.1', resolve))
  rie.url = `http://127.0.0.1:${(rie.server.address() as AddressInfo).port}`
  return rie
}

let rie: HeldRie | undefined
let gateway: TestGateway | undefined

afterEach(async () => {
  rie?.server.closeAllConnections()
  await gateway?.close()
  await new Promise((resolve) => rie?.server.close(resolve) ?? resolve(undefined))
})

describe('the rie invoker with a busy function', () => {
  it('queues invocations so the RIE never runs two at once', async () => {
    rie = await startHeldRie()
    gateway = await startTestGateway({
      invoker: createInvoker('rie', {
        endpoints: `*=${rie.url}`,
        concurrency: 1,
        queueTimeoutMs: 30_000,
      }),
    })
    const url = gateway.url

    const answers = [1, 2, 3].map(() => send(url, { path: '/echo' }))
    await rie.arrived(1)
    for (let released = 1; released <= 3; released++) {
      await rie.arrived(released)
      rie.releaseOne()
    }
    const responses = await Promise.all(answers)

    expect(responses.map((response) => response.status)).toEqual([200, 200, 200])
    expect(rie.received).toBe(3)
    expect(rie.overlapped).toBe(0)
  })

  it('answers 503 function_busy once the bounded wait runs out', async () => {
    rie = await startHeldRie()
    gateway = await startTestGateway({
      invoker: createInvoker('rie', {
        endpoints: `*=${rie.url}`,
        concurrency: 1,
        queueTimeoutMs: 200,
      }),
    })
    const url = gateway.url
    const first = send(url, { path: '/echo' })
    await rie.arrived(1)

    const second: RawResponse = await send(url, { path: '/echo' })
    rie.releaseOne()
    const firstResponse = await first

    expect(second.status).toBe(503)
    expect(json(second)).toMatchObject({ code: 'function_busy' })
    expect(second.headers['retry-after']).toBe('1')
    expect(firstResponse.status).toBe(200)
    expect(rie.received).toBe(1)
    const busy = gateway.lines.find((line) => line.message === 'function busy')
    expect(busy?.fields).toMatchObject({ function: expect.any(String) })
  })
})

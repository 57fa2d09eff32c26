import { describe, expect, it, vi } from 'vitest'
import { z } from 'zod'
import { HttpError } from '../../../lib/errors.ts'
import { type ApiEvent, endpoint, json } from '../../../lib/http.ts'
import { text } from '../../../lib/validation.ts'
import { apiEvent, lambdaContext } from '../../support/lambda.ts'

vi.hoisted(() => {
  process.env.JWT_SECRET ??= 'a-test-secret-that-is-long-enough-for-hs256'
  process.env.LOG_LEVEL = 'SILENT'
})

function makeEvent(overrides: Partial<ApiEvent> = {}): ApiEvent {
  return apiEvent('POST /things/{id}', { rawPath: '/things/1', ...overrides })
}

const echo = endpoint(
  { name: 'echo', auth: false, body: z.object({ name: text().min(1) }) },
  async function echoName({ body }) {
    return json(200, { name: body.name })
  },
)

const failing = endpoint({ name: 'failing', auth: false }, async function fail() {
  throw new Error('database password is hunter2')
})

const refusing = endpoint({ name: 'refusing', auth: false }, async function refuse() {
  throw new HttpError(409, 'already_there', { detail: 'It is already there' })
})

const guarded = endpoint({ name: 'guarded' }, async function neverRuns() {
  return json(200, {})
})

function parse(body: string | undefined): Record<string, unknown> {
  return JSON.parse(body ?? '{}')
}

describe('the endpoint middleware chain', () => {
  it('answers the endpoint result with security headers and a correlation id', async () => {
    const event = makeEvent({
      headers: { 'content-type': 'application/json' },
      body: '{"name":"Ada"}',
    })

    const result = await echo(event, lambdaContext())

    expect(result.statusCode).toBe(200)
    expect(parse(result.body)).toEqual({ name: 'Ada' })
    expect(result.headers?.['x-content-type-options']).toBe('nosniff')
    expect(result.headers?.['x-correlation-id']).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('echoes a well-formed correlation id and replaces a malformed one', async () => {
    const good = makeEvent({
      headers: { 'content-type': 'application/json', 'x-correlation-id': 'abc.DEF_1-2' },
      body: '{"name":"x"}',
    })
    const bad = makeEvent({
      headers: { 'content-type': 'application/json', 'x-correlation-id': 'no spaces<>' },
      body: '{"name":"x"}',
    })

    const kept = await echo(good, lambdaContext())
    const replaced = await echo(bad, lambdaContext())

    expect(kept.headers?.['x-correlation-id']).toBe('abc.DEF_1-2')
    expect(replaced.headers?.['x-correlation-id']).not.toBe('no spaces<>')
    expect(replaced.headers?.['x-correlation-id']).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('answers malformed JSON with a 400 problem', async () => {
    const event = makeEvent({
      headers: { 'content-type': 'application/json' },
      body: '{"name":',
    })

    const result = await echo(event, lambdaContext())

    expect(result.statusCode).toBe(400)
    expect(result.headers?.['content-type']).toBe('application/problem+json')
    expect(parse(result.body)).toMatchObject({ status: 400, code: 'malformed_json' })
  })

  it('refuses a body that is not JSON with 415', async () => {
    const event = makeEvent({ headers: { 'content-type': 'text/plain' }, body: 'name=x' })

    const result = await echo(event, lambdaContext())

    expect(result.statusCode).toBe(415)
  })

  it('names the failing field in a 422', async () => {
    const event = makeEvent({
      headers: { 'content-type': 'application/json' },
      body: '{"name":5}',
    })

    const result = await echo(event, lambdaContext())

    expect(result.statusCode).toBe(422)
    const problem = parse(result.body)
    expect(problem.code).toBe('validation_failed')
    expect(problem.errors).toEqual([expect.objectContaining({ field: 'body.name' })])
  })

  it('refuses a NUL character in text with a 422 instead of reaching the database', async () => {
    const event = makeEvent({
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'a\u0000b' }),
    })

    const result = await echo(event, lambdaContext())

    expect(result.statusCode).toBe(422)
  })

  it('hides the message of an unexpected error behind a 500 with the correlation id', async () => {
    const event = makeEvent({ headers: { 'x-correlation-id': 'trace-500' } })

    const result = await failing(event, lambdaContext())

    expect(result.statusCode).toBe(500)
    expect(result.body).not.toContain('hunter2')
    expect(parse(result.body)).toMatchObject({
      code: 'internal_error',
      correlationId: 'trace-500',
    })
    expect(result.headers?.['x-correlation-id']).toBe('trace-500')
    expect(result.headers?.['x-content-type-options']).toBe('nosniff')
  })

  it('keeps the status, code and detail of an HttpError', async () => {
    const result = await refusing(makeEvent(), lambdaContext())

    expect(result.statusCode).toBe(409)
    expect(parse(result.body)).toMatchObject({
      type: 'tag:docservice,2026:problem/already_there',
      title: 'Conflict',
      status: 409,
      detail: 'It is already there',
      code: 'already_there',
    })
  })

  it('refuses a request without a bearer token before touching the database', async () => {
    const result = await guarded(makeEvent(), lambdaContext())

    expect(result.statusCode).toBe(401)
    expect(result.headers?.['www-authenticate']).toBe('Bearer')
  })

  it('refuses a forged token', async () => {
    const event = makeEvent({
      headers: { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' },
    })

    const result = await guarded(event, lambdaContext())

    expect(result.statusCode).toBe(401)
  })
})

import type middy from '@middy/core'
import { badRequest, unsupportedMediaType } from '../errors.ts'
import {
  type ApiEvent,
  type ApiRequest,
  type ApiResult,
  bodyBytes,
  type ServiceContext,
} from '../http.ts'

const JSON_TYPE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i

/** Parses a JSON body; a missing or other content type is 415, malformed JSON 400. */
export function jsonBody(): middy.MiddlewareObj<
  ApiEvent,
  ApiResult,
  Error,
  ServiceContext
> {
  function before(request: ApiRequest): void {
    const { event } = request
    const type = event.headers?.['content-type'] ?? ''
    if (!JSON_TYPE.test(type)) {
      throw unsupportedMediaType('Send the body as application/json', {
        expected: 'application/json',
      })
    }

    const raw = bodyBytes(event).toString('utf8')
    try {
      request.context.state.body = JSON.parse(raw)
    } catch {
      throw badRequest('malformed_json', 'The request body is not valid JSON')
    }
  }
  return { before }
}

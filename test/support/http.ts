import { randomBytes, randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

/** The shared corpus of real documents, beside the repository. */
export const CORPUS_DIR = fileURLToPath(
  new URL('../../../shared/corpus/', import.meta.url),
)

export const FINAL_STATUSES = ['done', 'failed', 'skipped'] as const

export type Account = {
  email: string
  password: string
  token: string
  headers: { authorization: string; 'x-forwarded-for': string }
}

export type DocumentBody = {
  id: string
  status: string
  statusReason: string | null
  [field: string]: unknown
}

/** A fresh email, so test files sharing the database never meet each other's users. */
export function randomEmail(): string {
  return `user-${randomUUID()}@example.test`
}

export async function postJson(
  url: string,
  body: unknown,
  headers = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-forwarded-for': randomClientIp(),
      ...headers,
    },
    body: JSON.stringify(body),
  })
}

async function expectStatus(response: Response, status: number, action: string) {
  if (response.status !== status) {
    throw new Error(`${action} answered ${response.status}: ${await response.text()}`)
  }
}

/**
 * An address from the benchmarking range (198.18.0.0/15) for one test client. Loopback is
 * a trusted proxy, so each client gets its own rate-limit buckets, as users behind a
 * proxy do, and the real limits stay on.
 */
export function randomClientIp(): string {
  const [a = 0, b = 0, c = 0] = randomBytes(3)
  return `198.${18 + (a & 1)}.${b}.${c}`
}

/** Registers a new account and logs in; the headers carry its bearer token. */
export async function registerAndLogin(baseUrl: string, email = randomEmail()) {
  const password = `pw-${randomUUID()}`
  const client = { 'x-forwarded-for': randomClientIp() }
  const registered = await postJson(
    `${baseUrl}/auth/register`,
    { email, password },
    client,
  )
  await expectStatus(registered, 201, 'register')

  const login = await postJson(`${baseUrl}/auth/login`, { email, password }, client)
  await expectStatus(login, 200, 'login')
  const { accessToken } = (await login.json()) as { accessToken: string }

  const account: Account = {
    email,
    password,
    token: accessToken,
    headers: { authorization: `Bearer ${accessToken}`, ...client },
  }
  return account
}

export type UploadInput = {
  bytes: Uint8Array
  filename: string
  /** The declared type; the service sniffs the real one from the bytes. */
  type?: string
  title?: string
}

/** Reads a corpus file by its path inside the corpus (as manifest.json names it). */
export async function corpusFile(relative: string): Promise<UploadInput> {
  const bytes = await readFile(path.join(CORPUS_DIR, relative))
  return { bytes, filename: path.basename(relative) }
}

/** POST /documents as multipart/form-data with a `file` part and an optional title. */
export async function upload(
  baseUrl: string,
  account: Account,
  input: UploadInput,
): Promise<Response> {
  const form = new FormData()
  const type = input.type ?? 'application/octet-stream'
  form.append('file', new Blob([input.bytes], { type }), input.filename)
  if (input.title !== undefined) form.append('title', input.title)
  return fetch(`${baseUrl}/documents`, {
    method: 'POST',
    headers: account.headers,
    body: form,
  })
}

export async function getDocument(
  baseUrl: string,
  account: Account,
  id: string,
): Promise<DocumentBody> {
  const response = await fetch(`${baseUrl}/documents/${id}`, { headers: account.headers })
  await expectStatus(response, 200, `GET /documents/${id}`)
  return (await response.json()) as DocumentBody
}

/**
 * Polls a document until its extraction status is final, failing with the last state
 * seen once the deadline passes.
 */
export async function waitForFinal(
  baseUrl: string,
  account: Account,
  id: string,
  timeoutMs = 60_000,
): Promise<DocumentBody> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const document = await getDocument(baseUrl, account, id)
    if ((FINAL_STATUSES as readonly string[]).includes(document.status)) return document
    if (Date.now() > deadline) {
      throw new Error(`document ${id} still ${document.status} after ${timeoutMs} ms`)
    }
    await delay(200)
  }
}

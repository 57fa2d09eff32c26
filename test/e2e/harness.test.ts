import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApp, type TestApp } from '../support/app.ts'
import { corpusFile, registerAndLogin, upload, waitForFinal } from '../support/http.ts'

const collapse = (text: string) => text.replace(/\s+/g, ' ').toLowerCase()

describe('the test app (gateway and worker in-process)', () => {
  let app: TestApp

  beforeAll(async () => {
    app = await startApp()
  })

  afterAll(async () => {
    await app?.stop()
  })

  it('answers /health on its own port', async () => {
    const response = await fetch(`${app.url}/health`)

    expect(response.status).toBe(200)
  })

  it('takes a scan from upload to extracted text', async () => {
    const account = await registerAndLogin(app.url)
    const scan = await corpusFile('docs/testocr.png')

    const created = await upload(app.url, account, { ...scan, title: 'harness scan' })
    expect(created.status).toBe(201)
    const { id } = (await created.json()) as { id: string }
    const final = await waitForFinal(app.url, account, id)
    const response = await fetch(`${app.url}/documents/${id}/text`, {
      headers: account.headers,
    })

    expect(final.status).toBe('done')
    expect(response.status).toBe(200)
    const { text } = (await response.json()) as { text: string }
    expect(collapse(text)).toContain('quick brown dog')
  })
})

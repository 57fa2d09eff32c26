import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const LOGGER = new URL('../../../lib/logger.ts', import.meta.url).href

let folder: string

beforeAll(async () => {
  folder = await mkdtemp(path.join(os.tmpdir(), 'log-output-'))
})

afterAll(async () => {
  await rm(folder, { recursive: true, force: true })
})

type Run = { code: number | null; signal: string | null; stdout: string; stderr: string }

/** Runs `body` in a child process with a logger `log`, and collects what it wrote. */
async function runLogging(body: string): Promise<Run> {
  const script = path.join(folder, `script-${Math.random().toString(36).slice(2)}.ts`)
  await writeFile(
    script,
    `import { createLogger } from '${LOGGER}'\nconst log = createLogger('log-test')\n${body}\n`,
  )
  const env = { ...process.env, LOG_LEVEL: 'INFO' }
  try {
    const { stdout, stderr } = await run(process.execPath, [script], { env })
    return { code: 0, signal: null, stdout, stderr }
  } catch (failed) {
    // A child that exits non-zero or by a signal rejects, with what it wrote.
    const { code, signal, stdout, stderr } = failed as Run
    return { code, signal, stdout, stderr }
  }
}

function messages(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => (JSON.parse(line) as { message: string }).message)
}

describe('log output', () => {
  it('writes every line of a busy turn in order, one JSON object per line', async () => {
    const run = await runLogging(`
      for (let index = 0; index < 2000; index += 1) log.info(\`line \${index}\`)
      log.warn('a warning')
      process.on('exit', () => log.info('from an exit handler'))
    `)

    const written = messages(run.stdout)
    expect(run.code).toBe(0)
    expect(written).toEqual([
      ...Array.from({ length: 2000 }, (_, index) => `line ${index}`),
      'from an exit handler',
    ])
    expect(messages(run.stderr)).toEqual(['a warning'])
  })

  it('writes an error line at once, with every line queued before it', async () => {
    const run = await runLogging(`
      log.info('queued before the error')
      log.error('the error')
      process.kill(process.pid, 'SIGKILL')
    `)

    expect(run.signal).toBe('SIGKILL')
    expect(messages(run.stdout)).toEqual(['queued before the error'])
    expect(messages(run.stderr)).toEqual(['the error'])
  })

  it('loses no line when the process crashes', async () => {
    const run = await runLogging(`
      log.info('before the crash')
      throw new Error('crash')
    `)

    expect(run.code).not.toBe(0)
    expect(messages(run.stdout)).toEqual(['before the crash'])
  })
})

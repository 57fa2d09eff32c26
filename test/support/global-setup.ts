import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { TestProject } from 'vitest/node'
import { resetConfig } from '../../lib/config.ts'
import { closePool, getPool } from '../../lib/db.ts'
import { migrate } from '../../lib/migrate.ts'
import { ensureBucket, resetStorage } from '../../lib/storage.ts'
import { startEmbeddedPostgres, startEmbeddedS3 } from '../../local/embedded.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The environment every test file runs with: the shared services and a secret. */
    serviceEnv: Record<string, string>
  }
}

const BUCKET = 'documents-test'

async function makeRoot(): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'docservice-test-'))
  // Under root, PostgreSQL runs as an unprivileged user that must be able to enter it.
  await chmod(root, 0o755)
  return root
}

async function prepareStores(env: Record<string, string>): Promise<void> {
  Object.assign(process.env, env)
  resetConfig()
  try {
    await migrate(getPool())
    await ensureBucket()
  } finally {
    await closePool()
    resetStorage()
  }
}

/**
 * Starts one PostgreSQL and one S3 server for the whole run, in a temporary directory
 * outside the repository, and hands their addresses to every test file.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = await makeRoot()
  const [postgres, s3] = await Promise.all([
    startEmbeddedPostgres({ dataDir: path.join(root, 'postgres'), ephemeral: true }),
    startEmbeddedS3({ dataDir: path.join(root, 's3'), bucket: BUCKET }),
  ])
  const env = {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.LOG_LEVEL || 'SILENT',
    DATA_DIR: root,
    DATABASE_URL: postgres.url,
    S3_ENDPOINT: s3.url,
    S3_BUCKET: BUCKET,
    JWT_SECRET: randomBytes(48).toString('base64url'),
    // Every test file that starts the app gets its own OCR pool; one each fits 2 cores.
    OCR_WORKERS: '1',
    // Tests poll documents far faster than a person would; the per-account limit itself
    // is proven in rate-limit.test.ts.
    RATE_LIMIT_DOCUMENTS: '100000/60',
  }
  async function teardown(): Promise<void> {
    await Promise.all([s3.stop(), postgres.stop()])
    await rm(root, { recursive: true, force: true })
  }

  try {
    await prepareStores(env)
  } catch (error) {
    await teardown()
    throw error
  }
  project.provide('serviceEnv', env)
  return teardown
}

// The compose stack's one-shot init step (`migrate` service): applies the database
// migrations and creates the bucket, then exits. PostgreSQL and the object store may
// still be starting, so each step is retried until a deadline.
import { getConfig } from '../lib/config.ts'
import { closePool, getPool } from '../lib/db.ts'
import { createLogger } from '../lib/logger.ts'
import { migrate } from '../lib/migrate.ts'
import { ensureBucket, resetStorage } from '../lib/storage.ts'

const DEADLINE_MS = 120_000
const RETRY_MS = 2_000

async function retrying<T>(step: string, run: () => Promise<T>): Promise<T> {
  const log = createLogger('migrate')
  const deadline = performance.now() + DEADLINE_MS
  while (true) {
    try {
      return await run()
    } catch (error) {
      if (performance.now() > deadline) throw error
      log.warn(`${step} failed; retrying`, { error: error as Error })
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS))
    }
  }
}

async function main(): Promise<void> {
  getConfig()
  const log = createLogger('migrate')
  const applied = await retrying('migrations', () => migrate(getPool()))
  await retrying('bucket', () => ensureBucket())
  log.info('migrations applied', { applied, bucket: getConfig().S3_BUCKET })
  await closePool()
  resetStorage()
}

await main()

import { resetConfig } from '../../lib/config.ts'
import { closePool, getPool } from '../../lib/db.ts'
import { migrate } from '../../lib/migrate.ts'
import { ensureBucket, resetStorage } from '../../lib/storage.ts'

/**
 * Points this test process at stores of its own: the variables set, config, pool and S3
 * client made anew, the schema migrated and the bucket there.
 */
export async function useStores(env: Record<string, string>): Promise<void> {
  Object.assign(process.env, env)
  resetConfig()
  await closePool()
  resetStorage()
  await migrate(getPool())
  await ensureBucket()
}

/** Drops this process's connections and puts the environment back as `saved` had it. */
export async function leaveStores(saved: NodeJS.ProcessEnv): Promise<void> {
  await closePool()
  resetStorage()
  restoreEnv(saved)
  resetConfig()
}

/** Puts `process.env` back as it was when `saved` was copied from it. */
export function restoreEnv(saved: NodeJS.ProcessEnv): void {
  for (const key of Object.keys(process.env)) {
    if (!(key in saved)) delete process.env[key]
  }
  Object.assign(process.env, saved)
}

import { resetConfig } from '../../lib/config.ts'
import { closePool } from '../../lib/db.ts'
import { stopQueue } from '../../lib/queue.ts'
import { resetStorage } from '../../lib/storage.ts'
import { startGateway } from '../../local/gateway.ts'
import { startWorker } from '../../local/worker.ts'

export type TestApp = { url: string; stop(): Promise<void> }

/**
 * The gateway on 127.0.0.1 (a free port) and, unless told otherwise, the extraction
 * worker, both in this process against the services from global-setup.ts.
 */
export async function startApp(options: { worker?: boolean } = {}): Promise<TestApp> {
  resetConfig()
  const gateway = await startGateway({ host: '127.0.0.1', port: 0 })
  const worker = options.worker === false ? undefined : await startWorker()

  return {
    url: gateway.url,
    async stop() {
      await gateway.close()
      await worker?.stop()
      // Uploads start the queue on first use even when this app runs no worker.
      await stopQueue()
      await closePool()
      resetStorage()
    },
  }
}

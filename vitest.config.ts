import os from 'node:os'
import { defineConfig } from 'vitest/config'

// One test file per core: e2e files run a gateway, a worker and an OCR pool each.
const workers = Math.max(1, Math.min(os.availableParallelism(), 4))

// .ci/run reads the counts for its closing line from this JSON report.
const reportFile = process.env.TEST_REPORT_FILE

export default defineConfig({
  test: {
    // One PostgreSQL and one S3 server for the whole run, shared by every file.
    globalSetup: ['test/support/global-setup.ts'],
    setupFiles: ['test/support/env.ts'],
    maxWorkers: workers,
    reporters: reportFile
      ? ['default', ['json', { outputFile: reportFile }]]
      : ['default'],
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 15_000 },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
})

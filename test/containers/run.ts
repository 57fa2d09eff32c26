// npm run test:containers: builds the project's image against local base images and
// checks it the way docker-compose.yml runs it; validates docker-compose.yml offline; and
// checks the fields Grafana and Alloy query against real log lines. Starts its own
// dockerd when none is reachable and stops it (by PID) at the end.
//
// Prints one line per check, then "N passed, N failed". CONTAINER_TEST_REPORT (a file
// path) receives {passed, failed} as JSON for .ci/run. CONTAINER_TEST_DIR sets the work
// folder (engine data root, base image rootfs, logs); it is kept between runs so the
// base images and the build cache are reused.
import { readFile, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildBundles } from '../../esbuild.config.ts'
import { type BaseImages, makeBaseImages } from './base-image.ts'
import {
  composeConfig,
  lintSchema,
  loadCompose,
  missingGroups,
  missingHardening,
} from './compose-checks.ts'
import { type Engine, ensureTools, run, runLogged, startEngine } from './docker.ts'
import { checkOcr, checkRuntimeApi, inspectImage } from './image-checks.ts'
import {
  alloyRequirements,
  dashboardRequirements,
  fieldAt,
  type LogLine,
  serviceLogLines,
  unmet,
} from './log-fields.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CORPUS = path.resolve(ROOT, '../shared/corpus')
const WORK_DIR =
  process.env.CONTAINER_TEST_DIR || path.join(os.tmpdir(), 'docservice-containers')
const IMAGE = 'docservice:container-test'

type Outcome = { name: string; ok: boolean; ms: number; detail?: string }
const outcomes: Outcome[] = []
const started = performance.now()

function log(line: string): void {
  const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(6)
  console.log(`[${seconds}s] ${line}`)
}

/** Runs one check; a failure is recorded and the run goes on. */
async function check<T>(name: string, body: () => Promise<T>): Promise<T | undefined> {
  const begun = performance.now()
  try {
    const value = await body()
    const ms = Math.round(performance.now() - begun)
    outcomes.push({ name, ok: true, ms })
    log(`ok   ${name} (${ms} ms)`)
    return value
  } catch (error) {
    const ms = Math.round(performance.now() - begun)
    const detail = error instanceof Error ? error.message : String(error)
    outcomes.push({ name, ok: false, ms, detail })
    log(`FAIL ${name} (${ms} ms)\n${detail.replace(/^/gm, '       ')}`)
    return undefined
  }
}

function requireImage(built: boolean): void {
  if (!built) throw new Error('the image was not built')
}

async function buildImage(engine: Engine, base: BaseImages): Promise<void> {
  const logFile = path.join(WORK_DIR, 'build.log')
  await writeFile(logFile, '')
  const code = await runLogged(
    'docker',
    [
      'build',
      '--force-rm',
      '--network',
      'host',
      '--build-arg',
      `BUILD_IMAGE=${base.build}`,
      '--build-arg',
      `RUNTIME_IMAGE=${base.runtime}`,
      // The RIE is a release download this machine cannot reach; see the README, "Run with Docker Compose".
      '--build-arg',
      'INSTALL_RIE=false',
      '--tag',
      IMAGE,
      ROOT,
    ],
    logFile,
    { env: engine.env, timeoutMs: 30 * 60_000 },
  )
  if (code !== 0) {
    const tail = (await readFile(logFile, 'utf8')).split('\n').slice(-40).join('\n')
    throw new Error(`docker build exited with ${code}:\n${tail}`)
  }
  const size = await run('docker', ['image', 'inspect', '--format', '{{.Size}}', IMAGE], {
    env: engine.env,
  })
  log(`image ${IMAGE}: ${(Number(size.stdout) / 1024 / 1024).toFixed(0)} MiB`)
}

async function containerChecks(engine: Engine): Promise<LogLine[]> {
  const base = await check('base images: Debian bookworm minbase + Node 24', () =>
    makeBaseImages(engine, WORK_DIR, log),
  )
  const built =
    base !== undefined &&
    (await check('the Dockerfile builds against the local base images', async () => {
      await buildImage(engine, base)
      return true
    })) === true

  await check('a function bundle answers through the Lambda Runtime API', () => {
    requireImage(built)
    return checkRuntimeApi(engine, IMAGE, 'functions/health/index.handler', 'health')
  })
  const wrappers =
    (await check(
      'a group bundle (as compose runs it) answers through the Runtime API',
      () => {
        requireImage(built)
        return checkRuntimeApi(engine, IMAGE, 'groups/api/index.handler', 'fn-api')
      },
    )) ?? []

  const inspection = await check('inspect the image as compose runs it', async () => {
    requireImage(built)
    return inspectImage(engine, IMAGE)
  })
  await check('the process runs as uid 1000, gid 1000', async () => {
    if (!inspection) throw new Error('no inspection')
    if (inspection.uid !== 1000 || inspection.gid !== 1000) {
      throw new Error(`uid ${inspection.uid}, gid ${inspection.gid}`)
    }
  })
  await check('only /tmp is writable', async () => {
    if (!inspection) throw new Error('no inspection')
    const written = Object.entries(inspection.writes).filter(
      ([, result]) => result === 'written',
    )
    if (written.length !== 1 || written[0]?.[0] !== '/tmp') {
      throw new Error(`writes: ${JSON.stringify(inspection.writes)}`)
    }
  })
  await check('no setuid or setgid binaries', async () => {
    if (!inspection) throw new Error('no inspection')
    if (inspection.setuid.length > 0) throw new Error(inspection.setuid.join('\n'))
  })
  await check('no compilers and no npm in the image', async () => {
    if (!inspection) throw new Error('no inspection')
    const found = [...inspection.compilers, ...inspection.npm]
    if (found.length > 0) throw new Error(found.join('\n'))
  })
  await check('OCR and PDF rendering work from the bundle with no network', async () => {
    requireImage(built)
    const smoke = path.join(WORK_DIR, 'smoke')
    await buildBundles(smoke, [
      {
        name: 'extract-smoke',
        source: 'test/containers/extract-smoke.ts',
        ocr: true,
        migrations: false,
      },
    ])
    await checkOcr(engine, IMAGE, path.join(smoke, 'extract-smoke'), CORPUS)
  })
  return wrappers
}

async function composeChecks(): Promise<void> {
  await check('docker-compose config accepts docker-compose.yml', async () => {
    await composeConfig(ROOT)
  })
  const compose = await loadCompose(ROOT)
  await check('docker-compose.yml follows the Compose Specification schema', () =>
    lintSchema(compose),
  )
  await check('every function group has its container and gateway endpoint', async () => {
    const problems = missingGroups(compose)
    if (problems.length > 0) throw new Error(problems.join('\n'))
  })
  await check('every service of ours carries the hardening keys', async () => {
    const problems = missingHardening(compose)
    if (problems.length > 0) throw new Error(problems.join('\n'))
  })
}

async function logFieldChecks(wrappers: LogLine[]): Promise<void> {
  const lines = await check(
    'the service runs a scripted session and logs JSON',
    async () => {
      const collected = await serviceLogLines(ROOT)
      if (collected.length === 0) throw new Error('no JSON line on stdout')
      return collected
    },
  )
  await check('every field the dashboard queries is in the real log lines', async () => {
    if (!lines) throw new Error('no log lines')
    const problems = unmet(await dashboardRequirements(ROOT), lines)
    if (problems.length > 0) throw new Error(problems.join('\n'))
  })
  await check('every field the Alloy pipeline reads is in real lines', async () => {
    if (!lines) throw new Error('no log lines')
    const alloy = await alloyRequirements(ROOT)
    const problems = alloy.line
      .filter((key) => !lines.some((line) => fieldAt(line, key) !== undefined))
      .map((key) => `no service line has ${key}`)
    if (wrappers.length === 0) problems.push('no Docker json-file line to check against')
    for (const key of alloy.wrapper) {
      if (!wrappers.some((line) => fieldAt(line, key) !== undefined)) {
        problems.push(`no Docker json-file line has ${key}`)
      }
    }
    if (problems.length > 0) throw new Error(problems.join('\n'))
  })
}

async function main(): Promise<number> {
  let engine: Engine | undefined
  const stop = async () => {
    await engine?.stop()
  }
  process.once('SIGINT', () => void stop().then(() => process.exit(130)))
  process.once('SIGTERM', () => void stop().then(() => process.exit(143)))

  let wrappers: LogLine[] = []
  try {
    await check('docker.io, docker-compose and debootstrap are installed', () =>
      ensureTools(log),
    )
    engine = await check('a Docker engine answers', () => startEngine(WORK_DIR, log))
    if (engine) wrappers = await containerChecks(engine)
  } finally {
    await stop()
  }
  await composeChecks()
  await logFieldChecks(wrappers)

  const passed = outcomes.filter((outcome) => outcome.ok).length
  const failed = outcomes.length - passed
  const report = process.env.CONTAINER_TEST_REPORT
  if (report) await writeFile(report, JSON.stringify({ passed, failed }))
  log(`container test took ${((performance.now() - started) / 1000).toFixed(0)} s`)
  console.log(`${passed} passed, ${failed} failed`)
  return failed === 0 ? 0 : 1
}

process.exitCode = await main()

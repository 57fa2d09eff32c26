// Builds what the containers run: one ESM bundle per function in lib/routes.ts, plus the
// gateway, the extraction worker and the migration runner. `node esbuild.config.ts
// [outdir]` (npm run build) writes them under dist/ and prints each bundle's size.
//
// Layout of the output (the image copies it to /var/task as is):
//   functions/<name>/index.mjs   one per function; the handler is `functions/<name>/index.handler`
//   groups/<group>/index.mjs     one per function group with routes: one RIE container per
//                                group in docker-compose.yml, dispatching on the route key
//   gateway/index.mjs, worker/index.mjs, migrate/index.mjs
//   node_modules/                the native packages kept out of the bundles, and what they need
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type Metafile, type Plugin } from 'esbuild'
import { functions, routes } from './lib/routes.ts'

const ROOT = path.dirname(fileURLToPath(import.meta.url))
const MODULES = path.join(ROOT, 'node_modules')

/**
 * Packages with native addons (or prebuilt platform binaries) cannot be bundled: they
 * stay as imports and ship as node_modules beside the bundles. `pg-native` is an optional
 * require inside pg that is never installed.
 */
const NATIVE_PACKAGES = ['sharp', '@napi-rs/canvas', 'argon2']
const NEVER_INSTALLED = ['pg-native']

// OCR: tesseract.js runs in a worker thread started from a file, and its WebAssembly core
// reads its .wasm from beside that file. The worker script picks the core (SIMD,
// relaxed SIMD, LSTM-only or not) at run time, so every variant ships.
const OCR_WASM = [
  'tesseract-core.wasm',
  'tesseract-core-lstm.wasm',
  'tesseract-core-simd.wasm',
  'tesseract-core-simd-lstm.wasm',
  'tesseract-core-relaxedsimd.wasm',
  'tesseract-core-relaxedsimd-lstm.wasm',
]
const OCR_THREAD_SOURCE = 'lib/extraction/ocr-thread.ts'
const OCR_THREAD_BUNDLE = 'ocr-thread.mjs'
const ENGLISH_DATA = '@tesseract.js-data/eng'
const ENGLISH_MODEL = '4.0.0_best_int/eng.traineddata.gz'

// Bundled CommonJS code reads __dirname and calls require() for Node built-ins; an ES
// module has neither. Setting require on globalThis (not as a top-level const) cannot
// collide with a bundled module that declares its own `require`.
const BANNER = [
  "import { createRequire as __bundleCreateRequire } from 'node:module'",
  'globalThis.require ??= __bundleCreateRequire(import.meta.url)',
].join('\n')

export type Entry = {
  /** Folder under the output directory. */
  name: string
  source: string
  /** Whether the OCR thread, its WebAssembly and the language data go beside it. */
  ocr: boolean
  /** Whether lib/migrations/*.sql go beside it (lib/migrate.ts reads them from there). */
  migrations: boolean
}

function entries(): Entry[] {
  const fromRoutes = functions.map((fn) => ({
    name: `functions/${fn.name}`,
    source: fn.module,
    ocr: fn.name === 'jobs-extract',
    migrations: false,
  }))
  const groups = [...new Set(functions.map((fn) => fn.group))].filter((group) =>
    routes.some((route) => groupOf(route.function) === group),
  )
  const fromGroups = groups.map((group) => ({
    name: `groups/${group}`,
    source: `${GROUP_NAMESPACE}:${group}`,
    ocr: false,
    migrations: false,
  }))
  return [
    ...fromRoutes,
    ...fromGroups,
    { name: 'gateway', source: 'local/gateway.ts', ocr: false, migrations: false },
    { name: 'worker', source: 'local/worker.ts', ocr: true, migrations: false },
    { name: 'migrate', source: 'infra/migrate.ts', ocr: false, migrations: true },
  ]
}

const GROUP_NAMESPACE = 'function-group'

function groupOf(functionName: string): string | undefined {
  return functions.find((fn) => fn.name === functionName)?.group
}

/**
 * The entry of a group bundle, made from the route table: it imports the group's
 * handlers and calls the one whose route matches the event's route key (the gateway
 * builds it as `METHOD /path`). An unknown key throws, which the gateway answers 502.
 */
function groupSource(group: string): string {
  const members = functions.filter((fn) => fn.group === group)
  const imports = members.map(
    (fn, index) =>
      `import { handler as h${index} } from ${JSON.stringify(path.join(ROOT, fn.module))}`,
  )
  const table = routes
    .filter((route) => groupOf(route.function) === group)
    .map((route) => {
      const index = members.findIndex((fn) => fn.name === route.function)
      return `  ${JSON.stringify(`${route.method} ${route.path}`)}: h${index},`
    })
  return [
    ...imports,
    `const byRouteKey = {\n${table.join('\n')}\n}`,
    'export async function handler(event, context) {',
    '  const run = Object.hasOwn(byRouteKey, event?.routeKey) ? byRouteKey[event.routeKey] : undefined',
    `  if (!run) throw new Error(\`no function of the ${group} group serves \${event?.routeKey}\`)`,
    '  return run(event, context)',
    '}',
    '',
  ].join('\n')
}

function functionGroups(): Plugin {
  return {
    name: 'function-groups',
    setup(builder) {
      builder.onResolve({ filter: new RegExp(`^${GROUP_NAMESPACE}:`) }, (args) => ({
        path: args.path.slice(GROUP_NAMESPACE.length + 1),
        namespace: GROUP_NAMESPACE,
      }))
      builder.onLoad({ filter: /.*/, namespace: GROUP_NAMESPACE }, (args) => ({
        contents: groupSource(args.path),
        loader: 'js',
        resolveDir: ROOT,
      }))
    },
  }
}

/**
 * Rewrites, at build time, the two places where the OCR code names a file the bundle
 * lays out differently. Each rewrite must match exactly once, so a change to that code
 * breaks the build instead of shipping a bundle that cannot start OCR.
 */
function ocrLayout(): Plugin {
  const rewrites: Record<string, [string, string]> = {
    [path.join(ROOT, 'lib/extraction/ocr.ts')]: [
      "new URL('./ocr-thread.ts', import.meta.url)",
      `new URL('./${OCR_THREAD_BUNDLE}', import.meta.url)`,
    ],
    [path.join(ROOT, OCR_THREAD_SOURCE)]: [
      "createRequire(import.meta.url)('tesseract.js/src/worker-script/node/index.js')",
      "require('tesseract.js/src/worker-script/node/index.js')",
    ],
  }
  return {
    name: 'ocr-layout',
    setup(builder) {
      builder.onLoad(
        { filter: /lib[\\/]extraction[\\/]ocr(-thread)?\.ts$/ },
        async (args) => {
          const rewrite = rewrites[args.path]
          if (!rewrite) return undefined
          const source = await readFile(args.path, 'utf8')
          const [from, to] = rewrite
          if (source.split(from).length !== 2) {
            throw new Error(
              `${path.relative(ROOT, args.path)} no longer contains ${from}`,
            )
          }
          return { contents: source.replace(from, to), loader: 'ts' }
        },
      )
    },
  }
}

async function bundle(
  sources: Record<string, string>,
  outdir: string,
): Promise<Metafile> {
  const result = await build({
    entryPoints: sources,
    outdir,
    absWorkingDir: ROOT,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    sourcemap: 'linked',
    sourcesContent: false,
    // `__dirname` in bundled CommonJS means the bundle's own folder, where its assets are.
    define: { __dirname: 'import.meta.dirname', __filename: 'import.meta.filename' },
    banner: { js: BANNER },
    external: [...NATIVE_PACKAGES, ...NEVER_INSTALLED],
    plugins: [functionGroups(), ocrLayout()],
    metafile: true,
    logLevel: 'warning',
    // Keeps function and class names: stack traces and timings then say where.
    keepNames: true,
    legalComments: 'linked',
  })
  return result.metafile
}

async function copyOcrAssets(dir: string): Promise<void> {
  const core = path.join(MODULES, 'tesseract.js-core')
  for (const file of OCR_WASM) await cp(path.join(core, file), path.join(dir, file))

  // lib/extraction/ocr.ts finds the model through require.resolve from the bundle.
  const data = path.join(dir, 'node_modules', ENGLISH_DATA)
  await mkdir(path.join(data, path.dirname(ENGLISH_MODEL)), { recursive: true })
  await cp(
    path.join(MODULES, ENGLISH_DATA, 'package.json'),
    path.join(data, 'package.json'),
  )
  await cp(
    path.join(MODULES, ENGLISH_DATA, ENGLISH_MODEL),
    path.join(data, ENGLISH_MODEL),
  )
}

type PackageJson = {
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
}

async function readPackage(dir: string): Promise<PackageJson | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'))
  } catch {
    return undefined
  }
}

/**
 * The external packages and everything they depend on at run time, as installed here
 * (optional dependencies only where installed: the platform binaries of this machine).
 */
async function runtimeClosure(roots: string[]): Promise<string[]> {
  const seen = new Set<string>()
  const pending = [...roots]
  while (pending.length > 0) {
    const name = pending.pop() as string
    if (seen.has(name)) continue
    const manifest = await readPackage(path.join(MODULES, name))
    if (!manifest) continue
    seen.add(name)
    pending.push(
      ...Object.keys(manifest.dependencies ?? {}),
      ...Object.keys(manifest.optionalDependencies ?? {}),
    )
  }
  return [...seen].sort()
}

async function copyRuntimeModules(outdir: string): Promise<string[]> {
  const names = await runtimeClosure(NATIVE_PACKAGES)
  for (const name of names) {
    await cp(path.join(MODULES, name), path.join(outdir, 'node_modules', name), {
      recursive: true,
      dereference: true,
    })
  }
  return names
}

async function sizeOf(file: string): Promise<number> {
  return (await stat(file)).size
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(2)} MiB`
  return `${(bytes / 1024).toFixed(1)} KiB`
}

export type BuildReport = {
  /** Each bundle (path relative to the output directory) and its size in bytes. */
  bundles: { file: string; bytes: number }[]
  modules: string[]
}

/**
 * Builds every bundle into `outdir` (emptied first). `extra` entries (tests) are built
 * the same way, beside the others.
 */
export async function buildBundles(
  outdir: string,
  extra: Entry[] = [],
): Promise<BuildReport> {
  await rm(outdir, { recursive: true, force: true })

  const all = [...entries(), ...extra]
  const sources: Record<string, string> = {}
  for (const entry of all) {
    sources[`${entry.name}/index`] = entry.source.startsWith(`${GROUP_NAMESPACE}:`)
      ? entry.source
      : path.join(ROOT, entry.source)
  }
  for (const entry of all.filter((candidate) => candidate.ocr)) {
    sources[`${entry.name}/ocr-thread`] = path.join(ROOT, OCR_THREAD_SOURCE)
  }
  const metafile = await bundle(sources, outdir)

  for (const entry of all) {
    const dir = path.join(outdir, entry.name)
    if (entry.ocr) await copyOcrAssets(dir)
    if (entry.migrations) {
      await cp(path.join(ROOT, 'lib/migrations'), path.join(dir, 'migrations'), {
        recursive: true,
      })
    }
  }
  const modules = await copyRuntimeModules(outdir)
  await writeFile(
    path.join(outdir, 'package.json'),
    `${JSON.stringify({ type: 'module', private: true }, null, 2)}\n`,
  )

  const bundles = []
  for (const output of Object.keys(metafile.outputs).filter((file) =>
    file.endsWith('.mjs'),
  )) {
    const file = path.resolve(ROOT, output)
    bundles.push({ file: path.relative(outdir, file), bytes: await sizeOf(file) })
  }
  return { bundles, modules }
}

async function main(): Promise<void> {
  const outdir = path.resolve(ROOT, process.argv[2] ?? 'dist')
  const started = performance.now()
  const report = await buildBundles(outdir)

  console.log(`bundles in ${path.relative(ROOT, outdir) || '.'}:`)
  for (const { file, bytes } of report.bundles) {
    console.log(`  ${file.padEnd(48)} ${formatBytes(bytes).padStart(10)}`)
  }
  console.log(`  node_modules (external): ${report.modules.join(', ')}`)
  console.log(`built in ${Math.round(performance.now() - started)} ms`)
}

if (import.meta.main) await main()

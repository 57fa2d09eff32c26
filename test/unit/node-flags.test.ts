import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { GATEWAY_NODE_FLAGS } from '../../local/runtime.ts'

const root = new URL('../../', import.meta.url)

describe("the gateway's Node flags", () => {
  it('are on the command of npm start', async () => {
    const manifest = JSON.parse(await readFile(new URL('package.json', root), 'utf8'))

    expect(manifest.scripts.start).toBe(
      `node ${GATEWAY_NODE_FLAGS.join(' ')} local/start.ts`,
    )
  })

  it("are on the compose gateway's entrypoint", async () => {
    const compose = await readFile(new URL('docker-compose.yml', root), 'utf8')

    expect(compose).toContain(
      `entrypoint: [/usr/local/bin/node, ${GATEWAY_NODE_FLAGS.join(', ')}, gateway/index.mjs]`,
    )
  })
})

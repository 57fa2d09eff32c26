import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { configSchema } from '../../lib/config.ts'

const RUNBOOK = new URL('../../RUNBOOK.md', import.meta.url)
const COLUMNS = ['variable', 'meaning', 'default', 'example', 'read by']

type Row = { name: string; cells: string[] }

/** The rows of the first table under `## Configuration`, up to the next `## `. */
async function variableTable(): Promise<{ header: string[]; rows: Row[] }> {
  const lines = (await readFile(RUNBOOK, 'utf8')).split('\n')
  const start = lines.findIndex((line) => line.trim() === '## Configuration')
  if (start < 0) throw new Error('RUNBOOK.md has no "## Configuration" section')
  const end = lines.findIndex((line, index) => index > start && line.startsWith('## '))
  const section = lines.slice(start + 1, end < 0 ? undefined : end)
  const first = section.findIndex((line) => line.startsWith('|'))
  const table: string[] = []
  for (const line of section.slice(first)) {
    if (!line.startsWith('|')) break
    table.push(line)
  }
  const split = (line: string) =>
    line
      .replace(/^\||\|$/g, '')
      .split(/(?<!\\)\|/)
      .map((cell) => cell.trim())
  const [header = '', , ...body] = table
  return {
    header: split(header).map((cell) => cell.toLowerCase()),
    rows: body.map((line) => {
      const cells = split(line)
      return { name: (cells[0] ?? '').replace(/`/g, ''), cells }
    }),
  }
}

const shape = configSchema.shape as Record<
  string,
  { safeParse(value: unknown): { success: boolean; data?: unknown } }
>

describe("RUNBOOK.md's variable table", () => {
  it('has the columns an operator needs', async () => {
    const { header } = await variableTable()
    expect(header).toEqual(COLUMNS)
  })

  it('lists exactly the variables of the configuration schema', async () => {
    const { rows } = await variableTable()
    const documented = rows.map((row) => row.name)
    const schema = Object.keys(configSchema.shape)

    expect(
      schema.filter((name) => !documented.includes(name)),
      'in lib/config.ts but not in RUNBOOK.md',
    ).toEqual([])
    expect(
      documented.filter((name) => !schema.includes(name)),
      'in RUNBOOK.md but not in lib/config.ts',
    ).toEqual([])
    expect(new Set(documented).size, 'a variable is listed twice').toBe(documented.length)
  })

  it('fills every cell of every row', async () => {
    const { rows } = await variableTable()
    for (const row of rows) {
      expect(row.cells, row.name).toHaveLength(COLUMNS.length)
      for (const cell of row.cells) expect(cell, row.name).not.toBe('')
    }
  })

  it("gives the schema's own default wherever it names a value", async () => {
    const { rows } = await variableTable()
    let compared = 0
    for (const { name, cells } of rows) {
      // A default written as a code span is a value; words describe computed ones.
      const literal = /^`([^`]+)`/.exec(cells[2] ?? '')?.[1]
      const field = shape[name]
      if (literal === undefined || !field) continue
      const documented = field.safeParse(literal)
      const actual = field.safeParse(undefined)
      expect(documented.success, `${name}: ${literal} is not a valid value`).toBe(true)
      expect(documented.data, `${name}'s default`).toEqual(actual.data)
      compared++
    }
    expect(compared).toBeGreaterThan(20)
  })

  it('gives an example that the schema accepts', async () => {
    const { rows } = await variableTable()
    for (const { name, cells } of rows) {
      const example = /^`([^`]+)`/.exec(cells[3] ?? '')?.[1]
      const field = shape[name]
      if (example === undefined || !field) continue
      expect(field.safeParse(example).success, `${name}: example ${example}`).toBe(true)
    }
  })
})

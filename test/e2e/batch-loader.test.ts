import { describe, expect, it } from 'vitest'
import { batchLoader, getPool } from '../../lib/db.ts'

type Day = { slot: number; day: string }

/** Reads a batch of dates in one statement, as the service's batched statements do. */
function dayLoader(statements: { count: number }) {
  return batchLoader(async (texts: readonly string[]) => {
    statements.count += 1
    const { rows } = await getPool().query<Day>(
      `SELECT given.slot::integer AS slot, given.text::date::text AS day
       FROM unnest($1::text[]) WITH ORDINALITY AS given(text, slot)`,
      [texts],
    )
    return rows.sort((a, b) => a.slot - b.slot).map((row) => row.day)
  })
}

describe('batchLoader', () => {
  it('answers the calls of one turn with one statement', async () => {
    const statements = { count: 0 }
    const days = dayLoader(statements)

    const answers = await Promise.all(
      ['2026-01-01', '2026-01-02', '2026-01-03'].map((text) => days.load(text)),
    )

    expect(answers).toEqual(['2026-01-01', '2026-01-02', '2026-01-03'])
    expect(statements.count).toBe(1)
  })

  it('fails only the call whose value PostgreSQL refuses, not the rest of its batch', async () => {
    const days = dayLoader({ count: 0 })

    const answers = await Promise.allSettled(
      ['2026-01-01', '2026-02-30', '2026-03-01'].map((text) => days.load(text)),
    )

    expect(answers.map((answer) => answer.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
    ])
    expect(answers[0]).toMatchObject({ value: '2026-01-01' })
    expect(answers[1]).toMatchObject({ reason: { code: '22008' } })
  })
})

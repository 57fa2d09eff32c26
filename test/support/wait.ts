import { setTimeout as delay } from 'node:timers/promises'

/**
 * Reads a value until it is accepted or the deadline passes; the error names what was
 * awaited and the last value seen. Tests wait on state this way, never on a fixed sleep.
 */
export async function until<T>(
  what: string,
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const value = await read()
    if (accept(value)) return value
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`)
    }
    await delay(100)
  }
}

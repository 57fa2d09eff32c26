import { readdirSync, readlinkSync } from 'node:fs'
import os from 'node:os'

/** The niceness OCR runs at: below the request path, which keeps the default 0. */
export const BACKGROUND_PRIORITY = os.constants.priority.PRIORITY_BELOW_NORMAL

// Linux schedules threads one by one: setpriority on a thread id changes that thread
// alone, and a new thread starts with its creator's niceness. Only ever lowered, which
// needs no privilege.
function lower(threadId: number): void {
  if (os.getPriority(threadId) < BACKGROUND_PRIORITY) {
    os.setPriority(threadId, BACKGROUND_PRIORITY)
  }
}

/** Lowers the calling thread's priority; false where threads cannot be named (not Linux). */
export function lowerThreadPriority(): boolean {
  try {
    lower(Number(readlinkSync('/proc/thread-self').split('/').pop()))
    return true
  } catch {
    return false
  }
}

/** Lowers every thread of this process, and so every thread it starts later. */
export function lowerProcessPriority(): void {
  try {
    for (const task of readdirSync('/proc/self/task')) lower(Number(task))
  } catch {
    // Not Linux: setpriority on the process id is the process-wide form there.
    try {
      os.setPriority(BACKGROUND_PRIORITY)
    } catch {}
  }
}

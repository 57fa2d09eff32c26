import { readdirSync, readFileSync } from 'node:fs'

/** CPU time and memory of a group of processes at one moment, read from /proc (Linux). */
export type Usage = {
  /** CPU seconds used so far (user + system), all threads. */
  cpuSeconds: number
  /** Resident set size, summed over the group's processes. */
  rssBytes: number
  /** CPU seconds of threads running below normal priority (OCR threads). */
  nicedCpuSeconds: number
}

export type CpuSample = {
  /** When the sample was taken (epoch ms), to line up with Artillery's periods. */
  at: number
  /** 100 is one core busy for the whole interval. */
  cpuPercent: number
  rssMiB: number
  /** The part of cpuPercent spent by threads below normal priority. */
  nicedCpuPercent: number
}

// USER_HZ: 100 on every Linux that Node supports.
const TICKS_PER_SECOND = 100
const PAGE_SIZE = 4096

/** The fields of /proc/<pid>/stat after the command name, which may hold spaces. */
function statFields(path: string): string[] | undefined {
  try {
    const text = readFileSync(path, 'utf8')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

// Offsets into statFields(): field 3 (state) is index 0.
const PPID = 1
const UTIME = 11
const STIME = 12
const NICE = 16
const RSS_PAGES = 21

function ticksOf(fields: string[]): number {
  return Number(fields[UTIME]) + Number(fields[STIME])
}

/** The pids of a process and of all its descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry)
    if (!Number.isInteger(pid)) continue
    const fields = statFields(`/proc/${pid}/stat`)
    if (!fields) continue
    const parent = Number(fields[PPID])
    children.set(parent, [...(children.get(parent) ?? []), pid])
  }

  const tree: number[] = []
  const pending = [root]
  while (pending.length > 0) {
    const pid = pending.pop() as number
    tree.push(pid)
    pending.push(...(children.get(pid) ?? []))
  }
  return tree
}

function nicedTicks(pid: number): number {
  let ticks = 0
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const fields = statFields(`/proc/${pid}/task/${task}/stat`)
      if (fields && Number(fields[NICE]) > 0) ticks += ticksOf(fields)
    }
  } catch {
    // The process ended between listing and reading.
  }
  return ticks
}

/** Usage of the processes now; processes that have ended count nothing. */
export function readUsage(pids: readonly number[]): Usage {
  let ticks = 0
  let pages = 0
  let niced = 0
  for (const pid of pids) {
    const fields = statFields(`/proc/${pid}/stat`)
    if (!fields) continue
    ticks += ticksOf(fields)
    pages += Number(fields[RSS_PAGES])
    niced += Number(fields[NICE]) > 0 ? ticksOf(fields) : nicedTicks(pid)
  }
  return {
    cpuSeconds: ticks / TICKS_PER_SECOND,
    rssBytes: pages * PAGE_SIZE,
    nicedCpuSeconds: niced / TICKS_PER_SECOND,
  }
}

/**
 * Samples a group of processes at an interval. `pids` is asked again at every sample,
 * so a tree that gains processes (PostgreSQL backends) is followed.
 */
export function sampleUsage(pids: () => number[], intervalMs: number) {
  const samples: CpuSample[] = []
  let previous = { at: performance.now(), usage: readUsage(pids()) }

  const timer = setInterval(() => {
    const at = performance.now()
    const usage = readUsage(pids())
    const seconds = (at - previous.at) / 1000
    const percent = (delta: number) => Math.round((delta / seconds) * 1000) / 10
    samples.push({
      at: Date.now(),
      cpuPercent: Math.max(0, percent(usage.cpuSeconds - previous.usage.cpuSeconds)),
      rssMiB: Math.round((usage.rssBytes / 1024 / 1024) * 10) / 10,
      nicedCpuPercent: Math.max(
        0,
        percent(usage.nicedCpuSeconds - previous.usage.nicedCpuSeconds),
      ),
    })
    previous = { at, usage }
  }, intervalMs)
  timer.unref()

  return {
    samples,
    stop: () => clearInterval(timer),
  }
}

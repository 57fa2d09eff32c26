/**
 * Where log lines go: stdout, or stderr for warnings and errors, as Powertools writes
 * them. Lines written in one turn of the event loop leave together in one write.
 *
 * One synchronous write per line was the gateway's largest cost under load: two lines
 * per request, each a system call. Batching keeps the order of lines and loses none on
 * a normal exit or a crash; a SIGKILL loses at most the current turn's lines. An error
 * line is written at once, with everything before it, so that it survives a process
 * that is about to die.
 */

type Stream = 'stdout' | 'stderr'

// A turn that logs this much flushes early rather than holding a large buffer.
const MAX_PENDING_LINES = 512

let pending: { stream: Stream; line: string }[] = []
let scheduled = false
// Once the process exits no later turn comes: a line then leaves at once.
let exiting = false

/** Queues one line; `urgent` writes it and everything queued before it now. */
export function writeLogLine(stream: Stream, line: string, urgent = false): void {
  pending.push({ stream, line })
  if (urgent || exiting || pending.length >= MAX_PENDING_LINES) {
    flushLogLines()
    return
  }
  if (!scheduled) {
    scheduled = true
    setImmediate(flushLogLines).unref()
  }
}

/** Writes every queued line, consecutive lines of one stream in one write. */
export function flushLogLines(): void {
  scheduled = false
  const lines = pending
  pending = []

  let stream: Stream | undefined
  let text = ''
  for (const entry of lines) {
    if (stream !== undefined && entry.stream !== stream) {
      process[stream].write(text)
      text = ''
    }
    stream = entry.stream
    text += `${entry.line}\n`
  }
  if (stream !== undefined) process[stream].write(text)
}

process.on('exit', () => {
  exiting = true
  flushLogLines()
})

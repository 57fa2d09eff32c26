// autocannon ships no types; this covers the part loadtest/bench.ts uses.
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  type Options = {
    url: string
    connections?: number
    duration?: number
    headers?: Record<string, string>
  }

  type Histogram = { average: number; p50: number; p99: number; max: number }

  type Result = {
    requests: Histogram & { total: number }
    latency: Histogram
    non2xx: number
    errors: number
    timeouts: number
  }

  type Instance = EventEmitter & PromiseLike<Result>

  function autocannon(options: Options): Instance
  export default autocannon
}

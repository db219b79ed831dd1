/**
 * pressureSampler: the event-loop delay and heap samples that decide whether
 * a worker is overloaded (routes/shedding.ts sheds the argon2 routes then).
 * @module
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'

/** The delay histogram's resolution, in ms; its floor, taken off each mean. */
const RESOLUTION_MS = 10

export interface PressureSampler {
  isUnderPressure: () => boolean
  stop: () => void
}

/**
 * Samples every `sampleMs` the mean event-loop delay since the last sample
 * and the V8 heap in use, as @fastify/under-pressure did, but with
 * v8.getHeapStatistics() rather than process.memoryUsage(): the latter opens
 * /proc/self/stat for the RSS, which throws EMFILE when the worker has no
 * descriptor left (a flood of idle connections). Thrown from the plugin's
 * timer that was an uncaught error: every worker drained and exited at once
 * and the instance refused connections for 25 s. Nothing here needs one.
 */
export function pressureSampler (options: { maxEventLoopDelayMs: number, maxHeapBytes: number, sampleMs: number }): PressureSampler {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  histogram.enable()
  let delayMs = 0
  let heapUsed = 0
  const timer = setInterval(() => {
    delayMs = Number.isNaN(histogram.mean) ? Infinity : Math.max(0, histogram.mean / 1e6 - RESOLUTION_MS)
    histogram.reset()
    heapUsed = getHeapStatistics().used_heap_size
  }, options.sampleMs)
  timer.unref()
  return {
    // 0 turns a check off, as it did in the plugin.
    isUnderPressure: () => (options.maxEventLoopDelayMs > 0 && delayMs > options.maxEventLoopDelayMs) ||
      (options.maxHeapBytes > 0 && heapUsed > options.maxHeapBytes),
    stop: () => {
      clearInterval(timer)
      histogram.disable()
    }
  }
}

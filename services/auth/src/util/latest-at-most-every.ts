/**
 * Passes a value that changes often on at most once per interval: a change
 * after a quiet interval at once, later ones together at the interval's end
 * as the newest value, and none that repeats the last one passed on. For
 * the hashing queue's share (cluster/primary.ts): the measured cost of a
 * hash moves by a tenth from hash to hash, and announcing each move woke
 * every HTTP worker about once per login.
 * @module
 */

export interface Timers {
  set: (run: () => void, ms: number) => unknown
  clear: (handle: unknown) => void
}

const NODE_TIMERS: Timers = {
  set: (run, ms) => setTimeout(run, ms).unref(),
  clear: (handle) => { clearTimeout(handle as NodeJS.Timeout) }
}

export interface LatestAtMostEvery<T> {
  offer: (value: T) => void
  /** Drops what is still to be passed on. */
  stop: () => void
}

export function latestAtMostEvery<T> (intervalMs: number, passOn: (value: T) => void, timers: Timers = NODE_TIMERS): LatestAtMostEvery<T> {
  let last: { value: T } | undefined
  let pending: { value: T } | undefined
  let timer: unknown
  const send = (value: T): void => {
    last = { value }
    passOn(value)
    timer = timers.set(intervalEnded, intervalMs)
  }
  const intervalEnded = (): void => {
    timer = undefined
    const next = pending
    pending = undefined
    if (next !== undefined && next.value !== last?.value) send(next.value)
  }
  return {
    offer: (value) => {
      if (timer !== undefined) pending = { value }
      else if (value !== last?.value) send(value)
    },
    stop: () => {
      if (timer !== undefined) timers.clear(timer)
      timer = undefined
      pending = undefined
    }
  }
}

/**
 * One per-IP budget per instance, however many workers, without an IPC round
 * trip per limited request. @fastify/rate-limit in each worker counts through
 * BatchedRateLimitStore: a request far from the limit is answered from the
 * worker's own view (the instance-wide count the primary last reported, plus
 * the hits this worker has not reported yet), and the hits go to the primary
 * in one batch every FLUSH_MS or as soon as a key has BATCH_HITS unreported.
 * Within BATCH_HITS of the limit, or once a key's view says the limit is
 * spent for its window, the worker asks the primary for that request (or
 * answers 429 at once), so a small limit is exact and a flood of refused
 * requests costs no IPC. The primary's counters keep the window arithmetic
 * of the plugin's own LocalStore (a fixed window from a key's first hit).
 *
 * Both sides remember at most 5000 addresses, and past that forget the
 * addresses they are limiting last: an address that has spent its budget is
 * forgotten inside its window only once half of what is remembered has
 * spent as much (docs/decisions.md, "Memory bounds"). The plugin's
 * LocalStore, an LRU, forgot an address at its limit as soon as 5000 others
 * had come since its last request, and it started over with a full budget.
 *
 * The cost: hits another worker has not reported yet are not seen, so an
 * instance may admit up to (workers - 1) x BATCH_HITS more than the limit in
 * one window (docs/decisions.md, "Per-IP limits counted in batches").
 * @module
 */
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'

/** A worker's question to its primary over IPC, answered by the primary's handler of that kind. */
export type AskPrimary = <T>(kind: string, body: unknown) => Promise<T>

interface Count { current: number, ttl: number }

/** One key's hits since the worker's last report. */
export interface RateHits { key: string, hits: number, timeWindow: number, max: number }
/** The primary's answer for each key of a batch, in order: the instance-wide count after the hits. */
export type RateCounts = Count[]

export const FLUSH_MS = 100
export const BATCH_HITS = 20
/** Keys a worker, and the primary, remember at most. */
const MAX_KEYS = 5000

interface KeyView {
  /** The instance-wide count as the primary last reported it. */
  known: number
  /** Hits sent to the primary, not yet answered. */
  sent: number
  /** Hits not yet sent. */
  unsent: number
  /** When the primary's window for this key ends (ms since the epoch). */
  windowEnd: number
  timeWindow: number
  max: number
  /** Requests near the limit waiting for the next answer, by their position among the unsent hits. */
  waiting: Array<{ position: number, callback: (error: Error | null, result?: Count) => void }>
}

/**
 * The worker's side. `ask` reaches the primary's `rate` handler (rateLimitCounter).
 * Exported as a class (not only through the plugin) so a test can drive it.
 */
export class BatchedRateLimiter {
  readonly #ask: AskPrimary
  readonly #views = new Map<string, KeyView>()
  #timer: NodeJS.Timeout | undefined

  constructor (ask: AskPrimary) {
    this.#ask = ask
  }

  /** How many addresses this worker keeps a view of. */
  get remembered (): number { return this.#views.size }

  incr (key: string, callback: (error: Error | null, result?: Count) => void, timeWindow: number, max: number): void {
    const now = Date.now()
    const view = this.#view(key, now, timeWindow, max)
    const estimate = view.known + view.sent + view.unsent + 1
    view.unsent++
    const ttl = view.windowEnd - now
    // Local answers still come on a later turn, as an IPC answer did: a
    // synchronous one reorders the plugin's hook against the login shedding
    // check that runs beside it (test/workers.test.ts, the hashing share).
    // Once the window is over, the view is of the last one until the primary
    // answers: a hit still unreported kept it from starting afresh (#view),
    // and answering from it refused a request of the new window, with a
    // Retry-After of 0 or less.
    if (view.known > max && now < view.windowEnd) {
      // Spent for the rest of the window: counts only grow within one.
      setImmediate(callback, null, { current: estimate, ttl })
      this.#later()
    } else if (estimate > max - BATCH_HITS) {
      view.waiting.push({ position: view.unsent, callback })
      this.flush()
    } else {
      setImmediate(callback, null, { current: estimate, ttl })
      if (view.unsent >= BATCH_HITS) this.flush()
      else this.#later()
    }
  }

  /** Sends every unsent hit in one message. */
  flush (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    const batch: Array<{ key: string, view: KeyView, hits: number, waiting: KeyView['waiting'] }> = []
    for (const [key, view] of this.#views) {
      if (view.unsent === 0) continue
      batch.push({ key, view, hits: view.unsent, waiting: view.waiting })
      view.sent += view.unsent
      view.unsent = 0
      view.waiting = []
    }
    if (batch.length === 0) return
    const hits: RateHits[] = batch.map(({ key, view, hits }) => ({ key, hits, timeWindow: view.timeWindow, max: view.max }))
    this.#ask<RateCounts>('rate', hits).then((counts) => {
      const now = Date.now()
      batch.forEach(({ view, hits, waiting }, i) => {
        const count = counts[i] ?? { current: view.known + hits, ttl: view.windowEnd - now }
        view.sent -= hits
        view.known = count.current
        view.windowEnd = now + count.ttl
        for (const { position, callback } of waiting) callback(null, { current: count.current - hits + position, ttl: count.ttl })
      })
    }, (err: Error) => {
      for (const { view, hits, waiting } of batch) {
        view.sent -= hits
        for (const { callback } of waiting) callback(err)
      }
    })
  }

  #later (): void {
    this.#timer ??= setTimeout(() => { this.flush() }, FLUSH_MS).unref()
  }

  #view (key: string, now: number, timeWindow: number, max: number): KeyView {
    let view = this.#views.get(key)
    if (view !== undefined && view.windowEnd <= now && view.sent === 0 && view.unsent === 0) {
      view.known = 0
      view.windowEnd = now + timeWindow
    }
    if (view === undefined) {
      if (this.#views.size >= MAX_KEYS) this.#forgetIdle(now)
      view = { known: 0, sent: 0, unsent: 0, windowEnd: now + timeWindow, timeWindow, max, waiting: [] }
      this.#views.set(key, view)
    }
    return view
  }

  /**
   * Forgets keys whose window is over and that have nothing in flight, then,
   * while still more than half full, the oldest idle ones not refused for the
   * rest of their window, and only then the refused ones: a forgotten view
   * starts from the primary's count again within one report, and until that
   * report a refused address's requests were answered from a view of none
   * (up to BATCH_HITS of them admitted). Always down to half, so a spray of
   * new addresses within one window pays for one scan every MAX_KEYS / 2 new
   * keys; forgetting only the oldest one made every new key scan all 5000
   * (about 50 µs each, 40 times the cost below the cap).
   */
  #forgetIdle (now: number): void {
    const idle = (view: KeyView): boolean => view.sent === 0 && view.unsent === 0
    const refused = (view: KeyView): boolean => view.known > view.max && now < view.windowEnd
    for (const [key, view] of this.#views) {
      if (idle(view) && view.windowEnd <= now) this.#views.delete(key)
    }
    for (const spentToo of [false, true]) {
      for (const [key, view] of this.#views) {
        if (this.#views.size < MAX_KEYS / 2) return
        if (idle(view) && (spentToo || !refused(view))) this.#views.delete(key)
      }
    }
  }
}

/** The store class the plugin instantiates in a worker: every instance of it shares one limiter. */
export function instanceRateLimitStore (ask: AskPrimary): FastifyRateLimitStoreCtor {
  const limiter = new BatchedRateLimiter(ask)
  return class InstanceRateLimitStore implements FastifyRateLimitStore {
    incr (key: string, callback: (error: Error | null, result?: Count) => void, timeWindow: number, max: number): void {
      limiter.incr(key, callback, timeWindow, max)
    }

    /** One budget across routes, as the plugin's global limit has. */
    child (): FastifyRateLimitStore {
      return this
    }
  }
}

interface Counted { current: number, windowStart: number, timeWindow: number }

/**
 * The primary's counters, answering every worker's batches: a fixed window
 * from a key's first hit, as the plugin's LocalStore counts. Past MAX_KEYS
 * it forgets, down to half at once, first the keys whose window is over,
 * then the live ones with the fewest hits: forgetting a key gives its
 * address back the hits it had, so the ones with the fewest cost the least,
 * and an address refused for the rest of its window is forgotten only once
 * half the keys remembered have spent a whole budget too.
 */
export function rateLimitCounter (now: () => number = Date.now): (batch: RateHits[]) => RateCounts {
  const counts = new Map<string, Counted>()
  const forget = (at: number): void => {
    for (const [key, counted] of counts) if (counted.windowStart + counted.timeWindow <= at) counts.delete(key)
    if (counts.size < MAX_KEYS / 2) return
    // Stable: among equal counts the oldest key goes first.
    const fewestFirst = [...counts].sort(([, a], [, b]) => a.current - b.current)
    for (const [key] of fewestFirst.slice(0, counts.size - MAX_KEYS / 2 + 1)) counts.delete(key)
  }
  return (batch) => {
    const at = now()
    return batch.map(({ key, hits, timeWindow }) => {
      let counted = counts.get(key)
      if (counted === undefined) {
        if (counts.size >= MAX_KEYS) forget(at)
        counted = { current: 0, windowStart: at, timeWindow }
        counts.set(key, counted)
      } else if (counted.windowStart + timeWindow <= at) {
        counted.current = 0
        counted.windowStart = at
      }
      counted.timeWindow = timeWindow
      counted.current += hits
      return { current: counted.current, ttl: counted.windowStart + timeWindow - at }
    })
  }
}

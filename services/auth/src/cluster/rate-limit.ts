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
 * requests costs no IPC. The primary's counters are the plugin's own
 * LocalStore, so the window arithmetic is the plugin's.
 *
 * The cost: hits another worker has not reported yet are not seen, so an
 * instance may admit up to (workers - 1) x BATCH_HITS more than the limit in
 * one window (docs/decisions.md, "Per-IP limits counted in batches").
 * @module
 */
import { createRequire } from 'node:module'
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { AskPrimary } from './hashing.js'

interface Count { current: number, ttl: number }
interface LocalStore {
  incr: (key: string, callback: (err: Error | null, result: Count) => void, timeWindow: number, max: number) => void
}
type LocalStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, cache?: number) => LocalStore

/** One key's hits since the worker's last report. */
export interface RateHits { key: string, hits: number, timeWindow: number, max: number }
/** The primary's answer for each key of a batch, in order: the instance-wide count after the hits. */
export type RateCounts = Count[]

export const FLUSH_MS = 100
export const BATCH_HITS = 20
/** Keys a worker remembers at most (the plugin's LocalStore keeps 5000). */
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
   * while still more than half full, the oldest idle ones: a forgotten view
   * starts from the primary's count again within one report. Always down to
   * half, so a spray of new addresses within one window pays for one scan
   * every MAX_KEYS / 2 new keys; forgetting only the oldest one made every
   * new key scan all 5000 (about 50 µs each, 40 times the cost below the cap).
   */
  #forgetIdle (now: number): void {
    for (const [key, view] of this.#views) {
      if (view.sent === 0 && view.unsent === 0 && view.windowEnd <= now) this.#views.delete(key)
    }
    for (const [key, view] of this.#views) {
      if (this.#views.size < MAX_KEYS / 2) return
      if (view.sent === 0 && view.unsent === 0) this.#views.delete(key)
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

/** The primary's counters, answering every worker's batches. */
export function rateLimitCounter (): (batch: RateHits[]) => RateCounts {
  const LocalStoreClass = createRequire(import.meta.url)('@fastify/rate-limit/store/LocalStore.js') as LocalStoreCtor
  const store = new LocalStoreClass(false, false)
  return (batch) => batch.map(({ key, hits, timeWindow, max }) => {
    let count: Count = { current: 0, ttl: timeWindow }
    // LocalStore answers synchronously; one incr per hit keeps its window logic.
    for (let i = 0; i < hits; i++) store.incr(key, (_err, result) => { count = { current: result.current, ttl: result.ttl } }, timeWindow, max)
    return count
  })
}

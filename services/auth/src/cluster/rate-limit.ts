/**
 * One per-IP budget per instance, however many workers: @fastify/rate-limit
 * in each worker counts through this store, whose counters live in the
 * primary (the plugin's own LocalStore, so the window arithmetic is the
 * plugin's). One IPC round trip per limited request; the routes the limit
 * does not cover never ask.
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

export interface RateAsk { key: string, timeWindow: number, max: number }

/** The store class the plugin instantiates in a worker. */
export function instanceRateLimitStore (ask: AskPrimary): FastifyRateLimitStoreCtor {
  return class InstanceRateLimitStore implements FastifyRateLimitStore {
    incr (key: string, callback: (error: Error | null, result?: Count) => void, timeWindow: number, max: number): void {
      ask<Count>('rate', { key, timeWindow, max } satisfies RateAsk).then((count) => callback(null, count), (err: Error) => callback(err))
    }

    /** One budget across routes, as the plugin's global limit has. */
    child (): FastifyRateLimitStore {
      return this
    }
  }
}

/** The primary's counters, answering every worker's `rate` asks. */
export function rateLimitCounter (): (body: RateAsk) => Promise<Count> {
  const LocalStoreClass = createRequire(import.meta.url)('@fastify/rate-limit/store/LocalStore.js') as LocalStoreCtor
  const store = new LocalStoreClass(false, false)
  return async (body) => await new Promise<Count>((resolve, reject) => {
    store.incr(body.key, (err, result) => { if (err === null) resolve({ current: result.current, ttl: result.ttl }); else reject(err) }, body.timeWindow, body.max)
  })
}

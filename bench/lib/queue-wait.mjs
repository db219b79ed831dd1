// @ts-check
/**
 * How long logins waited in a Tessera instance's hashing queue, from its own
 * histogram (`tessera_hash_queue_wait_seconds` on /metrics): the scrape
 * before a load run and the one after give the waits of that run. Issue 12's
 * bound at 64 connections is on this wait ("nothing waits in a queue longer
 * than about half a second"); the client-side latency of the answered
 * logins adds the hash itself and is reported beside it.
 * @module
 */

const BUCKET = /^tessera_hash_queue_wait_seconds_bucket\{le="([^"]+)"\} (\d+(?:\.\d+)?(?:e[+-]?\d+)?)$/

/**
 * The histogram's cumulative bucket counts by upper bound in seconds
 * (+Inf as Infinity), from the Prometheus text format.
 * @param {string} text @returns {Map<number, number>}
 */
export function queueWaitBuckets (text) {
  /** @type {Map<number, number>} */
  const buckets = new Map()
  for (const line of text.split('\n')) {
    const match = BUCKET.exec(line)
    if (match === null) continue
    buckets.set(match[1] === '+Inf' ? Infinity : Number(match[1]), Number(match[2]))
  }
  return buckets
}

/**
 * The upper bound, in ms, of the highest bucket that gained an observation
 * between two scrapes: no wait in between was longer (Infinity when one
 * passed the last finite bucket; 0 when nothing was started).
 * @param {Map<number, number>} before @param {Map<number, number>} after @returns {number}
 */
export function longestWaitMs (before, after) {
  const bounds = [...after.keys()].sort((a, b) => a - b)
  let longest = 0
  let below = 0
  for (const bound of bounds) {
    const gained = (after.get(bound) ?? 0) - (before.get(bound) ?? 0)
    if (gained > below) longest = bound * 1000
    below = gained
  }
  return longest
}

/** The instance's histogram now. @param {string} url Tessera's base URL @returns {Promise<Map<number, number>>} */
export async function scrapeQueueWaits (url) {
  const res = await fetch(`${url}/metrics`)
  if (!res.ok) throw new Error(`${url}/metrics answered ${res.status}`)
  const buckets = queueWaitBuckets(await res.text())
  if (buckets.size === 0) throw new Error(`${url}/metrics has no tessera_hash_queue_wait_seconds histogram`)
  return buckets
}

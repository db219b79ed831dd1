/**
 * The per-IP counter of an instance with several workers (cluster/rate-limit.ts):
 * two workers' BatchedRateLimiters against the primary's one rateLimitCounter,
 * the IPC channel replaced by a direct call that counts the messages. The
 * real processes are in test/workers.test.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { BATCH_HITS, BatchedRateLimiter, FLUSH_MS, rateLimitCounter, type RateHits } from '../src/cluster/rate-limit.js'
import type { AskPrimary } from '../src/cluster/rate-limit.js'

interface Instance { workers: BatchedRateLimiter[], messages: () => number, counted: (key: string) => number }

function instance (workerCount: number): Instance {
  const counter = rateLimitCounter()
  let messages = 0
  const totals = new Map<string, number>()
  const ask: AskPrimary = async <T>(kind: string, body: unknown): Promise<T> => {
    if (kind !== 'rate') throw new Error(`unexpected ask ${kind}`)
    messages++
    const batch = body as RateHits[]
    for (const { key, hits } of batch) totals.set(key, (totals.get(key) ?? 0) + hits)
    await Promise.resolve()
    return counter(batch) as T
  }
  return {
    workers: Array.from({ length: workerCount }, () => new BatchedRateLimiter(ask)),
    messages: () => messages,
    counted: (key) => totals.get(key) ?? 0
  }
}

async function hit (worker: BatchedRateLimiter, key: string, max: number): Promise<{ current: number, ttl: number }> {
  return await new Promise((resolve, reject) => {
    worker.incr(key, (err, result) => { if (err !== null || result === undefined) reject(err ?? new Error('no count')); else resolve(result) }, 60_000, max)
  })
}

/** Requests one after another, alternating workers as new connections spread over them; how many the limit let through. */
async function admitted (workers: BatchedRateLimiter[], key: string, max: number, requests: number): Promise<number> {
  let passed = 0
  for (let i = 0; i < requests; i++) {
    const count = await hit(workers[i % workers.length] as BatchedRateLimiter, key, max)
    if (count.current <= max) passed++
  }
  return passed
}

t.test('far from the limit: answered in the worker, reported in batches, counted once for the instance', async (t) => {
  const { workers, messages, counted } = instance(2)
  const passed = await admitted(workers, '203.0.113.1', 300, 200)
  t.equal(passed, 200)
  t.ok(messages() <= Math.ceil(200 / BATCH_HITS) + 2, `${messages()} messages for 200 requests`)
  await sleep(FLUSH_MS * 3)
  t.equal(counted('203.0.113.1'), 200, 'every hit reached the primary')
  // Which worker reported last depends on the flush timers (under load, either);
  // one more hit reported by the other worker makes worker 0's view the older one.
  const other = workers[1] as BatchedRateLimiter
  await hit(other, '203.0.113.1', 300)
  other.flush()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(counted('203.0.113.1'), 201, 'the other worker reported after worker 0')
  const worker = workers[0] as BatchedRateLimiter
  t.ok((await hit(worker, '203.0.113.1', 300)).current < 202, 'a worker\'s view lags by what the others reported since its own last report')
  await sleep(FLUSH_MS * 3)
  const next = await hit(worker, '203.0.113.1', 300)
  t.equal(next.current, 203, 'its next report brings back the instance-wide count')
  t.ok(next.ttl > 0 && next.ttl <= 60_000, `ttl ${next.ttl}`)
})

t.test('a small limit is exact across workers', async (t) => {
  const { workers } = instance(2)
  const results: number[] = []
  for (let i = 0; i < 9; i++) results.push((await hit(workers[i % 2] as BatchedRateLimiter, '203.0.113.2', 6)).current)
  t.same(results.slice(0, 7), [1, 2, 3, 4, 5, 6, 7], 'each request gets its instance-wide place, whichever worker answers')
  t.same(results.map((current) => current <= 6), [true, true, true, true, true, true, false, false, false], 'six pass, then the budget is spent')
})

t.test('N workers never give N times the limit: the overshoot is bounded by the batch', async (t) => {
  for (const workerCount of [2, 4]) {
    const { workers } = instance(workerCount)
    const passed = await admitted(workers, '203.0.113.3', 100, 400)
    t.ok(passed >= 100, `${workerCount} workers: at least the limit passes (${passed})`)
    t.ok(passed <= 100 + (workerCount - 1) * BATCH_HITS, `${workerCount} workers: ${passed} passed, within (workers - 1) x ${BATCH_HITS} of 100`)
  }
})

t.test('a key whose budget is spent is refused in the worker, without asking', async (t) => {
  const { workers, messages } = instance(1)
  const worker = workers[0] as BatchedRateLimiter
  t.equal(await admitted(workers, '203.0.113.4', 5, 5), 5)
  t.equal((await hit(worker, '203.0.113.4', 5)).current, 6, 'the first refusal is the primary\'s')
  const before = messages()
  for (let i = 0; i < 50; i++) t.ok((await hit(worker, '203.0.113.4', 5)).current > 5)
  t.equal(messages(), before, 'fifty refusals, no message')
  t.equal((await hit(worker, '198.51.100.4', 5)).current, 1, 'another key is its own budget')
})

t.test('concurrent requests near the limit each get their own place', async (t) => {
  const { workers } = instance(1)
  const counts = await Promise.all(Array.from({ length: 8 }, async () => (await hit(workers[0] as BatchedRateLimiter, '203.0.113.5', 4)).current))
  t.same(counts.sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8])
})

t.test('a failed report fails the requests waiting on it', async (t) => {
  const worker = new BatchedRateLimiter(async () => { throw new Error('the primary is gone') })
  await t.rejects(hit(worker, '203.0.113.6', 3), /the primary is gone/)
})

t.test('a key spent in one window is asked about again once the window is over, even with hits still unreported', async (t) => {
  const { workers } = instance(1)
  const worker = workers[0] as BatchedRateLimiter
  const windowMs = 600
  const spend = async (): Promise<{ current: number, ttl: number }> => await new Promise((resolve, reject) => {
    worker.incr('203.0.113.7', (err, result) => { if (err !== null || result === undefined) reject(err ?? new Error('no count')); else resolve(result) }, windowMs, 2)
  })
  for (let i = 0; i < 4; i++) await spend()
  const asked = Date.now()
  const refused = await spend()
  const answered = Date.now()
  t.ok(refused.current > 2 && refused.ttl > 0, 'spent for the rest of the window')
  // The window's end as the worker sees it, from the refusal's ttl rather than
  // from this test's clock: the primary starts the window when the first report
  // reaches it, later than the first spend by as much as the machine is busy.
  const endsNoEarlierThan = asked + refused.ttl
  const endsNoLaterThan = answered + refused.ttl
  await sleep(FLUSH_MS * 2)
  // One refusal shortly before the window ends leaves a hit unreported until the next flush, past the end.
  await sleep(Math.max(0, endsNoEarlierThan - 20 - Date.now()))
  await spend()
  await sleep(Math.max(0, endsNoLaterThan + 15 - Date.now()))
  const after = await spend()
  t.ok(after.current <= 2 || after.ttl > 0, `a refusal says how long to wait (current ${after.current}, ttl ${after.ttl} ms)`)
  t.ok(after.current <= 2, `the new window admits it (current ${after.current})`)
})

t.test('a spray of new addresses within one window: past 5000 remembered, the worker forgets down to half at once, not one per new key', async (t) => {
  const worker = instance(1).workers[0] as BatchedRateLimiter
  /** `count` new keys, reported in batches of 50 as the flush timer would, so each is idle but within its window. */
  const spray = async (prefix: string, count: number): Promise<void> => {
    for (let i = 0; i < count; i += 50) {
      for (let j = 0; j < Math.min(50, count - i); j++) worker.incr(`${prefix}${i + j}`, () => {}, 60_000, 1_000_000)
      worker.flush()
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  await spray('192.0.2.', 5000)
  t.equal(worker.remembered, 5000, 'every address of the window, up to the cap')
  await spray('203.0.113.', 1)
  // Forgetting one key per new one kept it at 5000, and every later new key
  // scanned all 5000 again (about 50 µs each, 40 times the cost below the cap).
  t.equal(worker.remembered, 2500, 'down to half, the new key among them')
  await spray('198.51.100.', 2499)
  t.equal(worker.remembered, 4999, 'the next 2499 new keys forget nothing')
})

t.test('past 5000 addresses the primary forgets those with the fewest hits first, and keeps one refused for the rest of its window', async (t) => {
  let at = Date.now()
  const counter = rateLimitCounter(() => at)
  const count = (key: string, hits = 1): { current: number, ttl: number } => {
    const [answer] = counter([{ key, hits, timeWindow: 60_000, max: 300 }])
    if (answer === undefined) throw new Error('no count')
    return answer
  }
  t.equal(count('203.0.113.1', 301).current, 301, 'refused: past its 300')
  count('203.0.113.2')
  for (let i = 0; i < 4998; i++) count(`10.0.${i >> 8}.${i & 255}`)
  at += 1000
  count('198.51.100.1')
  // The plugin's LocalStore (an LRU of 5000) forgot the address least recently
  // seen, the one it was refusing, and gave it a whole new budget.
  t.same(count('203.0.113.1'), { current: 302, ttl: 59_000 }, 'the refused address is still refused, its window unchanged')
  t.equal(count('203.0.113.2').current, 1, 'an address of one hit was forgotten: the count is bounded')
  at += 59_000
  t.equal(count('203.0.113.1').current, 1, 'its window over, it starts afresh')
})

t.test('past 5000 addresses a worker forgets the idle views it is not refusing first', async (t) => {
  const worker = instance(1).workers[0] as BatchedRateLimiter
  const refused = '203.0.113.7'
  let passed = 0
  for (let i = 0; i < 101; i++) if ((await hit(worker, refused, 100)).current <= 100) passed++
  t.equal(passed, 100, 'the 101st refused')
  for (let i = 0; i < 5000; i += 50) {
    for (let j = i; j < i + 50; j++) worker.incr(`10.1.${j >> 8}.${j & 255}`, () => {}, 60_000, 1_000_000)
    worker.flush()
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.equal(worker.remembered, 2500, 'down to half')
  // Forgotten (the oldest idle view), it was answered from a view of no hits:
  // up to BATCH_HITS more admitted before the primary's count came back.
  t.ok((await hit(worker, refused, 100)).current > 100, 'the refused address is still refused, from the worker\'s own view')
})

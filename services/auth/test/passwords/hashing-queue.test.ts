/**
 * The hashing queue's announcements and the shed's place before every other
 * piece of work a login does (routes/shedding.ts).
 */
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { hashingShare, PasswordHasher, type HashEngine } from '../../src/passwords/hasher.js'
import { hashPassword, verifyPassword } from '../../src/passwords/verify.js'
import { buildTestApp } from '../helpers/app.js'

// Real argon2id, cheap enough that a test queues many.
const WEAK = { memoryCost: 1024, timeCost: 1, parallelism: 1 }

t.test('a full queue is announced once, and open again only after it drained a quarter of its bound', async (t) => {
  const announced: Array<{ saturated: boolean, admitted: number }> = []
  const hasher: PasswordHasher = new PasswordHasher({
    concurrency: 1,
    depth: 7,
    params: WEAK,
    onSaturationChange: (saturated) => { announced.push({ saturated, admitted: hasher.waiting + hasher.inFlight }) }
  })
  const admitted = Array.from({ length: 8 }, async (_, i) => await hasher.hash(`password ${i}`))
  t.ok(hasher.saturated, 'eight admitted fill one slot and seven places')
  t.match(await hasher.hash('one too many').catch((err: unknown) => err), { status: 503, retryAfter: 1 }, 'the ninth is refused at once')
  await Promise.all(admitted)
  t.same(announced, [{ saturated: true, admitted: 8 }, { saturated: false, admitted: 5 }],
    'one announcement when full, one when below 6 (¾ of 8): not one per finished hash')
  t.equal(hasher.shed, 1)
})

t.test('a shed login spends nothing: no per-IP budget, no database row', async (t) => {
  const hasher = new PasswordHasher({ concurrency: 1, depth: 0, params: WEAK })
  const { app, connection } = await buildTestApp(t, { TESSERA_RATE_LIMIT: '2' }, { hasher })
  const holding = hasher.hash('holds the only slot')
  t.ok(hasher.saturated)
  const attempt = async (username: string): Promise<Awaited<ReturnType<typeof app.inject>>> =>
    await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username, password: 'some password' } })
  const shed = await Promise.all(Array.from({ length: 5 }, async (_, i) => await attempt(`shed${i}`)))
  t.same(shed.map((r) => r.statusCode), [503, 503, 503, 503, 503], 'all five shed, none limited')
  for (const res of shed) {
    t.equal(res.headers['retry-after'], '1')
    t.notOk('ratelimit-remaining' in res.headers, 'the limiter did not run')
  }
  t.equal((await connection.db.selectFrom('login_throttle').select('username').execute()).length, 0, 'no attempt was counted')
  await holding
  const served = await attempt('after')
  t.equal(served.statusCode, 400, 'an unknown user once the queue has room')
  t.equal(served.headers['ratelimit-remaining'], '1', 'the first request to spend budget')
})

t.test('a burst is cut at the check: only as many as the queue holds start any database work', async (t) => {
  const hasher = new PasswordHasher({ concurrency: 1, depth: 1, params: WEAK })
  const { app, connection } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '1000' }, { hasher })
  t.equal(hasher.capacity, 2)
  // All six pass the queue's flag (nothing is queued yet when they arrive); the count of places does not let them.
  const burst = await Promise.all(Array.from({ length: 6 }, async (_, i) =>
    await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: `burst${i}`, password: 'some password' } })))
  t.same(burst.map((r) => r.statusCode).sort(), [400, 400, 503, 503, 503, 503], 'two evaluated, four shed')
  const counted = await connection.db.selectFrom('login_throttle').select('username').execute()
  t.equal(counted.length, 2, 'only the two let through counted an attempt')
  const after = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'after', password: 'some password' } })
  t.equal(after.statusCode, 400, 'the places were given back with the answers')
})

/** Real argon2id hashes on a clock that moves `wallMs` per hash, and an engine that reports `costMs` (CPU ms per hash) once it has hashed, as the hashing process does. */
function clockedEngine (clock: { now: number, wallMs: number }, costMs: number): HashEngine {
  const engine: HashEngine & { costMs: number | undefined } = {
    costMs: undefined,
    hash: async (password) => { const hash = await hashPassword(password, WEAK); clock.now += clock.wallMs; engine.costMs = costMs; return hash },
    verify: async (hash, password) => { const verdict = await verifyPassword(hash, password, WEAK); clock.now += clock.wallMs; engine.costMs = costMs; return verdict }
  }
  return engine
}

/**
 * A queue over `clockedEngine` that records every started hash's wait and
 * every capacity it announces.
 */
function clockedQueue ({ wallMs, costMs, ...limits }: { concurrency: number, depth: number, maxWaitMs: number, wallMs: number, costMs: number }): { hasher: PasswordHasher, clock: { now: number, wallMs: number }, capacities: number[], waits: number[] } {
  const clock = { now: 0, wallMs }
  const capacities: number[] = []
  const waits: number[] = []
  const hasher = new PasswordHasher({ ...limits, engine: clockedEngine(clock, costMs), now: () => clock.now, onCapacityChange: (capacity) => capacities.push(capacity) })
  hasher.observeWaits((seconds) => waits.push(seconds))
  return { hasher, clock, capacities, waits }
}

t.test('the queue is bounded in time: what the threads cannot finish within the bound at the measured cost is refused', async (t) => {
  // One thread, 100 ms of CPU per hash: ten a second.
  const { hasher, capacities, waits } = clockedQueue({ concurrency: 1, depth: 100, maxWaitMs: 400, wallMs: 100, costMs: 100 })
  t.equal(hasher.rate, 20, 'before any measurement a hash is assumed to cost 50 ms')
  t.equal(hasher.capacity, 8, 'so 400 ms admit eight at once')

  const first = await Promise.allSettled(Array.from({ length: 8 }, async (_, i) => await hasher.hash(`password ${i}`)))
  t.same(first.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected', 'rejected'],
    'admitted together; the sixth on would have started past 400 ms, so each is refused when its turn comes instead')
  t.match((first[5] as PromiseRejectedResult).reason, { status: 503, retryAfter: 1 })
  t.same(waits, [0, 0.1, 0.2, 0.3, 0.4], 'no started hash waited longer than the bound')
  t.equal(hasher.rate, 10, 'measured: 100 ms per hash on one thread')
  t.equal(hasher.depth, 3, 'at ten a second, 400 ms finish four: the one running and three waiting')
  t.same(capacities, [4], 'the new capacity was announced once (the workers take their shares of it)')

  const second = Array.from({ length: 5 }, async (_, i) => await hasher.hash(`again ${i}`).then(() => 'ok', (err: { status: number }) => err.status))
  t.same(await Promise.all(second), ['ok', 'ok', 'ok', 'ok', 503], 'the fifth is refused at once: it would have finished 500 ms from now')
  t.equal(hasher.shed, 4)
})

t.test('a storm that takes the CPU slows the hashes down but does not shrink the queue: the bound is not talked down by the sheds it causes', async (t) => {
  // Two threads at 25 ms of CPU per hash: 80 a second, 40 within 500 ms;
  // calm, a hash finishes every 12.5 ms.
  const { hasher, clock, capacities, waits } = clockedQueue({ concurrency: 2, depth: 1000, maxWaitMs: 500, wallMs: 12.5, costMs: 25 })
  await Promise.all(Array.from({ length: 16 }, async (_, i) => await hasher.hash(`calm ${i}`)))
  t.equal(hasher.capacity, 40, 'calm: 40 admitted at once')

  // The storm takes three quarters of the hashing's CPU: a hash finishes
  // every 50 ms. Finished hashes per second (what the queue measured
  // before) would say 20/s and admit 10, fewer than the 16 clients, and the
  // 6 shed would retry at once and keep the storm going.
  clock.wallMs = 50
  const storm = Array.from({ length: 16 }, async (_, i) => await hasher.hash(`storm ${i}`).then(() => 'ok', (err: { status: number }) => err.status))
  t.equal(hasher.waiting + hasher.inFlight, 16, 'all sixteen admitted: none refused at once')
  t.equal(hasher.capacity, 40, 'the capacity did not fall with the slower hashes')
  const outcomes = await Promise.all(storm)
  t.same(outcomes, [...Array(12).fill('ok'), 503, 503, 503, 503], 'the four whose turn came past 500 ms were refused then')
  t.equal(waits.length, 16 + 12, 'every started hash, calm and storm, reported its wait')
  t.ok(waits.every((seconds) => seconds <= 0.5), 'no started hash waited longer than the bound')
  t.same(capacities, [40], 'announced once, when the first measurement replaced the assumed cost')
})

t.test('by default 16 logins at once (make bench login) are all admitted on two cores, before and after the first measurement, however two workers split them', async (t) => {
  const config = loadConfig({ TESSERA_HASH_CONCURRENCY: '2', TESSERA_WORKERS: '2' }, '/srv')
  t.equal(config.hashMaxWaitMs, 500, 'the bound in time is on by default')
  const clock = { now: 0, wallMs: 15 }
  const hasher = new PasswordHasher({ concurrency: config.hashConcurrency, depth: config.hashQueueDepth, maxWaitMs: config.hashMaxWaitMs, engine: clockedEngine(clock, 30), now: () => clock.now })
  t.ok(hashingShare(hasher, 2) * 2 >= 16, `before a measurement each worker lets ${hashingShare(hasher, 2)} through: eight each`)
  const calm = await Promise.allSettled(Array.from({ length: 16 }, async (_, i) => await hasher.hash(`login ${i}`)))
  t.same(calm.filter((r) => r.status === 'rejected'), [], 'none shed')
  // 30 ms of CPU per hash: argon2id at Tessera's parameters on the measured machine takes 28-30.
  t.ok(hashingShare(hasher, 2) >= 16, `measured, each worker lets ${hashingShare(hasher, 2)} through: all sixteen on one worker still pass`)
})

t.test('the dummy hash of unknown names is made through the queue, and a failed making is tried again', async (t) => {
  let failNext = true
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const engine: HashEngine = {
    hash: async (password) => {
      await held
      if (failNext) {
        failNext = false
        throw new Error('the hashing process is gone')
      }
      return await hashPassword(password, WEAK)
    },
    verify: async (hash, password) => await verifyPassword(hash, password, WEAK)
  }
  const hasher = new PasswordHasher({ concurrency: 1, depth: 4, engine })
  const first = hasher.dummyVerify('a guess')
  t.equal(hasher.inFlight, 1, 'the making is a hash in flight, counted and bounded like any other')
  release()
  await t.rejects(first, { message: 'the hashing process is gone' }, 'the login that met the failure is refused')
  t.equal(await hasher.dummyVerify('another guess'), false, 'the next unknown name makes the dummy hash again and costs a verify')
  t.equal(await hasher.dummyVerify('a third guess'), false, 'and the hash made is kept')
})

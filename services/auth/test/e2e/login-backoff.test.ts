import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { countLoginAttempt, pruneLoginThrottle, refundLoginAttempt } from '../../src/passwords/login-throttle.js'
import { buildTestApp, CountingHasher, signUp, testConfig } from '../helpers/app.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { startServer } from '../helpers/server.js'
import { within } from '../helpers/http.js'

const PASSWORD = 'correct horse battery'

// Two server processes and production argon2: on a machine at load 15 this
// file needs more than tap's 180 s, which is not what it tests.
t.setTimeout(600_000)

/**
 * A Retry-After that counts down to `blockedUntil`: what is left of the wait
 * at some instant between sending the request and reading the answer, in
 * whole seconds rounded up, however slow the machine made that round trip.
 */
function countsDownTo (t: Test, wait: number, blockedUntil: Date, sentAt: number, answeredAt: number): void {
  const left = (at: number): number => Math.ceil((blockedUntil.getTime() - at) / 1000)
  t.ok(wait >= left(answeredAt) && wait <= left(sentAt), `Retry-After ${wait} s is what is left of the wait (${left(answeredAt)} to ${left(sentAt)} s)`)
}

t.test('five failures back the account off: the right password gets 429 without hashing, then works after the wait', async (t) => {
  const config = testConfig()
  const hasher = new CountingHasher({ concurrency: config.hashConcurrency, depth: config.hashQueueDepth })
  const { app, deps, advance } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_BASE: '30s' }, { hasher, realClock: true })
  await signUp(app, 'alice', PASSWORD)
  const attempt = async (password: string): Promise<{ status: number, body: Record<string, string>, headers: Record<string, unknown> }> => {
    const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'Alice', password } })
    return { status: res.statusCode, body: res.json(), headers: res.headers }
  }

  for (let i = 0; i < 5; i++) {
    const res = await attempt(`wrong password ${i}`)
    t.equal(res.status, 400)
    t.equal(res.body.error, 'invalid_grant')
  }
  const row = await deps.db.selectFrom('login_throttle').selectAll().where('username', '=', 'alice').executeTakeFirstOrThrow()
  t.equal(row.failures, 5, 'the normalized name carries the count')
  t.equal(row.blocked_until?.getTime(), row.last_failed_at.getTime() + 30_000, 'blocked after the fifth failure for base·2^0 = 30 s')

  const before = hasher.verifies
  const sentAt = Date.now()
  const backedOff = await attempt(PASSWORD)
  t.equal(backedOff.status, 429)
  t.equal(backedOff.body.error, 'temporarily_unavailable')
  const wait = Number(backedOff.headers['retry-after'])
  countsDownTo(t, wait, row.blocked_until ?? new Date(0), sentAt, Date.now())
  t.equal(backedOff.body.error_description, `too many failed logins for this username, or too many at once; retry in ${wait} s`)
  t.equal(hasher.verifies, before, 'no argon2 verify while backed off (the whole cost of a hash saved, counted rather than timed)')

  advance(31)
  const ok = await attempt(PASSWORD)
  t.equal(ok.status, 200, 'after the wait the right password works')
  t.equal(await deps.db.selectFrom('login_throttle').select('username').where('username', '=', 'alice').executeTakeFirst(), undefined, 'a success resets the counter')
  for (let i = 0; i < 4; i++) t.equal((await attempt('wrong again')).status, 400, 'a fresh streak of four is not backed off')
  t.equal((await attempt(PASSWORD)).status, 200)
})

t.test('the back-off doubles per failure up to the cap, and a stale streak starts over', async (t) => {
  const connection = await testConnection(t)
  const policy = { threshold: 3, base: 2, max: 10 }
  const now = new Date('2030-01-01T00:00:00Z')
  const waits: Array<number | null> = []
  let at = now
  let last = now
  for (let i = 0; i < 7; i++) {
    last = at
    const attempt = await countLoginAttempt(connection.db, 'bob', at, policy)
    if (attempt.refused) throw new Error(`attempt ${i + 1} refused`)
    waits.push(attempt.blockedUntil === null ? null : (attempt.blockedUntil.getTime() - at.getTime()) / 1000)
    at = attempt.blockedUntil ?? at
  }
  t.same(waits, [null, null, 2, 4, 8, 10, 10], 'threshold 3: 2 s, 4 s, 8 s, then the 10 s cap')
  t.same(await countLoginAttempt(connection.db, 'bob', last, policy), { refused: true, retryAfter: 10 }, 'while blocked an attempt is refused and not counted')
  // Retry-After is whole seconds, so a client that obeys it comes a little after the block's end.
  const justAfter = new Date(at.getTime() + 500)
  t.same(await countLoginAttempt(connection.db, 'bob', justAfter, policy), { refused: false, failures: 8, blockedUntil: new Date(justAfter.getTime() + 10_000) },
    'the first attempt after a capped block continues the streak: one guess per block, not the threshold\'s free guesses again')
  at = new Date(justAfter.getTime() + 10_000)
  const later = new Date(at.getTime() + 11_000)
  const fresh = await countLoginAttempt(connection.db, 'bob', later, policy)
  t.same(fresh, { refused: false, failures: 1, blockedUntil: null }, 'a streak older than the cap counts from one again')

  const many = await Promise.all(Array.from({ length: 20 }, async () => await countLoginAttempt(connection.db, 'carol', now, policy)))
  const counted = many.flatMap((a) => a.refused ? [] : [a.failures]).sort((a, b) => a - b)
  t.same(counted, [1, 2, 3], 'of 20 concurrent attempts exactly the threshold are counted, each once')
  t.equal(many.filter((a) => a.refused).length, 17, 'the rest are refused')
  await refundLoginAttempt(connection.db, 'carol', policy)
  t.same(await countLoginAttempt(connection.db, 'carol', now, policy), { refused: false, failures: 3, blockedUntil: new Date(now.getTime() + 2000) }, 'an attempt the hashing queue shed is refunded, and the block it set lifted')
})

t.test('the longest back-off the settings allow is answered 429 with its whole wait', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '1', TESSERA_LOGIN_BACKOFF_BASE: '365d', TESSERA_LOGIN_BACKOFF_MAX: '365d' })
  await signUp(app, 'yara', PASSWORD)
  const attempt = async (): Promise<{ statusCode: number, headers: Record<string, unknown> }> => await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'yara', password: 'wrong password' } })
  t.equal((await attempt()).statusCode, 400)
  const blocked = await attempt()
  t.equal(blocked.statusCode, 429)
  t.equal(blocked.headers['retry-after'], String(365 * 86_400), 'the frozen clock: the whole year')
})

t.test('unknown usernames are tracked alike, and the table is pruned and capped', async (t) => {
  const { app, deps, connection } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '2', TESSERA_LOGIN_BACKOFF_BASE: '30s' })
  for (let i = 0; i < 2; i++) {
    const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'nobody', password: 'whatever1' } })
    t.equal(res.statusCode, 400)
  }
  const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'nobody', password: 'whatever1' } })
  t.equal(res.statusCode, 429, 'an unknown name backs off exactly like a real one')
  t.equal(res.json().error, 'temporarily_unavailable')

  const db = deps.db
  const now = new Date()
  const old = new Date(now.getTime() - 16 * 60_000)
  // Its last failure is old, but its block ended a minute ago: the streak is not stale yet.
  await db.insertInto('login_throttle').values({ username: 'capped', failures: 9, last_failed_at: new Date(now.getTime() - 16 * 60_000), blocked_until: new Date(now.getTime() - 60_000) }).execute()
  await db.insertInto('login_throttle').values(Array.from({ length: 250 }, (_, i) => ({ username: `stale${i}`, failures: 1, last_failed_at: old, blocked_until: null }))).execute()
  await db.insertInto('login_throttle').values(Array.from({ length: 150 }, (_, i) => ({ username: `recent${i}`, failures: 1, last_failed_at: new Date(now.getTime() - (150 - i) * 1000), blocked_until: null }))).execute()
  t.equal(await pruneLoginThrottle(db, now, { max: 15 * 60, maxRows: 10_000, batch: 100 }), 250, 'every stale row')
  t.ok(await db.selectFrom('login_throttle').select('username').where('username', '=', 'capped').executeTakeFirst(), 'but not a streak whose block ended less than the maximum ago')
  const deleted = await pruneLoginThrottle(db, now, { max: 15 * 60, maxRows: 100, batch: 100 })
  t.equal(deleted, 52, 'then the oldest past the cap of 100')
  const left = await db.selectFrom('login_throttle').select('username').execute()
  t.equal(left.length, 100)
  t.ok(left.some((r) => r.username === 'nobody'), 'the newest streaks are kept')
  t.notOk(left.some((r) => r.username.startsWith('stale')))

  // One instance at a time: while another holds the lock, a run does nothing.
  const holder = await connection.pool.connect()
  try {
    await holder.query('BEGIN')
    await holder.query('SELECT pg_advisory_xact_lock($1)', [0x7e55e4a2])
    t.equal(await pruneLoginThrottle(db, now, { max: 1, maxRows: 100 }), undefined, 'skipped while another instance prunes')
    await holder.query('ROLLBACK')
  } finally {
    holder.release()
  }
})

t.test('two server processes on one database share the counter', async (t) => {
  const env = {
    DATABASE_URL: await createTestDatabase(t),
    TESSERA_KEK: randomBytes(32).toString('base64url'),
    TESSERA_LOGIN_BACKOFF_BASE: '30s',
    TESSERA_HASH_CONCURRENCY: '1',
    TESSERA_CLEANUP_INTERVAL: '1s'
  }
  const { db } = await testConnection(t, env.DATABASE_URL)
  await db.insertInto('login_throttle').values({ username: 'long-ago', failures: 9, last_failed_at: new Date(Date.now() - 3600_000), blocked_until: null }).execute()
  const a = await startServer(t, env)
  const b = await startServer(t, env)
  const post = async (base: string, body: Record<string, string>): Promise<Response> =>
    await fetch(`${base}${body.grant_type === undefined ? '/v1/users' : '/oauth/token'}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  t.equal((await post(a.url, { username: 'dave', password: PASSWORD })).status, 201)
  for (const [i, server] of [a, b, a, b, a].entries()) {
    const res = await post(server.url, { grant_type: 'password', username: 'dave', password: `wrong ${i}` })
    t.equal(res.status, 400, `failure ${i + 1} on ${server === a ? 'A' : 'B'}`)
  }
  const streak = await db.selectFrom('login_throttle').selectAll().where('username', '=', 'dave').executeTakeFirstOrThrow()
  t.equal(streak.blocked_until?.getTime(), streak.last_failed_at.getTime() + 30_000, 'five failures across both block for 30 s')
  for (const server of [b, a]) {
    const sentAt = Date.now()
    const res = await post(server.url, { grant_type: 'password', username: 'dave', password: PASSWORD })
    t.equal(res.status, 429, `${server === a ? 'A' : 'B'} refuses the right password too`)
    const wait = Number(res.headers.get('retry-after'))
    countsDownTo(t, wait, streak.blocked_until ?? new Date(0), sentAt, Date.now())
    t.same(await res.json(), { error: 'temporarily_unavailable', error_description: `too many failed logins for this username, or too many at once; retry in ${wait} s` })
  }

  // The servers' cleanup job (every second) forgets the stale streak and
  // keeps the live one. The bound only ends a broken run: a loaded machine
  // may delay the job's first turn by far more than its interval.
  const deadline = Date.now() + 120_000
  while (Date.now() < deadline && await db.selectFrom('login_throttle').select('username').where('username', '=', 'long-ago').executeTakeFirst() !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  const left = (await db.selectFrom('login_throttle').select('username').execute()).map((r) => r.username)
  t.same(left, ['dave'], 'the periodic cleanup deleted the stale row only')
  // The job logs the prune after its delete has committed: the line may follow the row's going.
  t.ok(await within(15_000, async () => /pruned login back-off rows/.test(a.output() + b.output())) !== undefined, 'and logged it')
})

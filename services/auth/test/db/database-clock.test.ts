/**
 * db/database-clock.ts: Postgres's clock read through a monotonic one, the
 * host's wall clock only reported.
 */
import { sql } from 'kysely'
import t from 'tap'
import { DatabaseClock, describeHostOffset } from '../../src/db/database-clock.js'
import { connect } from '../../src/db/connect.js'
import type { Db } from '../../src/db/database.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'

/** Holds the one connection of `db`'s pool until the returned function is called (and resolves once it is back in the pool). */
async function holdOnlyConnection (db: Db): Promise<() => Promise<void>> {
  let release = (): void => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  let holding = (): void => {}
  const isHeld = new Promise<void>((resolve) => { holding = resolve })
  const holder = db.connection().execute(async () => { holding(); await held })
  await isHeld
  return async () => { release(); await holder }
}

/** The read's round trip, halved, is its error; a busy machine's can be large, never a minute. */
const TOLERANCE_MS = 5000

t.test('tells Postgres\'s time whatever the host\'s wall clock says, and reports how far that is', async (t) => {
  const { db } = await testConnection(t)
  let monotonic = 1_000
  const clock = await DatabaseClock.read(db, { wallMs: () => Date.now() - 5 * 60_000, monotonicMs: () => monotonic })
  const { rows } = await sql<{ ms: number }>`SELECT extract(epoch FROM clock_timestamp()) * 1000 AS ms`.execute(db)
  const postgresMs = Number(rows[0]?.ms)
  t.ok(Math.abs(clock.now().getTime() - postgresMs) <= TOLERANCE_MS, 'within a round trip of clock_timestamp()')
  t.ok(Math.abs(clock.hostOffsetMs + 5 * 60_000) <= TOLERANCE_MS, `the host reported 5 min behind (${clock.hostOffsetMs} ms)`)
  t.equal(describeHostOffset(clock.hostOffsetMs), '5.0 min behind', 'in the words the start\'s warning uses')

  const before = clock.now().getTime()
  monotonic += 60_000
  t.equal(clock.now().getTime() - before, 60_000, 'moves on by the monotonic clock between readings')
  // A reading that puts the clock back by a sync's error (or a monotonic clock that ran fast) never dates a later call earlier.
  monotonic -= 500
  t.equal(clock.now().getTime(), before + 60_000, 'never earlier than a time it returned, by a sync\'s error')
  monotonic += 501
  t.equal(clock.now().getTime(), before + 60_001, 'and moves on once the reading passes it')
  // Postgres's clock itself set back (a failover to a host behind): taken, or the time would stand still as long as the step.
  monotonic -= 120_000
  t.equal(clock.now().getTime(), before + 60_001 - 120_000, 'a step back past MAX_HELD_MS is taken, not held')
})

t.test('a worker\'s clock from the primary\'s reading tells Postgres\'s time with no round trip of its own, then syncs', async (t) => {
  const { db } = await testConnection(t)
  const hostAhead = 5 * 60_000
  const primary = await DatabaseClock.read(db, { wallMs: () => Date.now() + hostAhead })
  // What a worker is handed at boot: nothing read from the database by it, so a database out of reach does not keep it from starting.
  const worker = DatabaseClock.fromHostOffset(db, primary.hostOffsetMs, { wallMs: () => Date.now() + hostAhead })
  t.ok(Math.abs(worker.now().getTime() - primary.now().getTime()) <= TOLERANCE_MS, 'the primary\'s time, on the same host')
  t.ok(Math.abs(worker.hostOffsetMs - hostAhead) <= TOLERANCE_MS, 'and its offset')
  await worker.sync()
  t.ok(Math.abs(worker.now().getTime() - primary.now().getTime()) <= TOLERANCE_MS, 'its own reading agrees')
})

t.test('a wait for a connection before the read is not counted in its round trip', async (t) => {
  // One connection, held: the sync waits for the pool (as it waits for a new
  // connection's set-up, or a pool busy after an outage) before Postgres reads
  // its clock. Counted in the round trip, that wait put the reading's middle
  // half of it before the read: the clock ahead by half the wait.
  const url = await createTestDatabase(t)
  const { db, close } = connect(url, 1)
  t.teardown(close)
  let monotonic = 1_000
  const clock = DatabaseClock.fromHostOffset(db, 0, { monotonicMs: () => monotonic })
  const release = await holdOnlyConnection(db)
  const syncing = clock.sync()
  monotonic += 10 * 60_000 // ten minutes waiting for the pool, on the clock the sync times with
  await release()
  await syncing
  const { rows } = await sql<{ ms: number }>`SELECT extract(epoch FROM clock_timestamp()) * 1000 AS ms`.execute(db)
  const behindPostgres = Number(rows[0]?.ms) - clock.now().getTime()
  t.ok(Math.abs(behindPostgres) <= TOLERANCE_MS, `Postgres's time, not 5 min ahead of it (${-behindPostgres} ms ahead)`)
})

t.test('a reading whose round trip is longer than MAX_HELD_MS is dropped while an earlier one stands: its error could pass for a step back', async (t) => {
  const { db } = await testConnection(t)
  let monotonic = 0
  let step = 0
  const clock = await DatabaseClock.read(db, { monotonicMs: () => { monotonic += step; return monotonic } })
  const before = clock.now().getTime()
  // Each read of the monotonic clock moves it 3 s: a sync whose round trip took 3 s (an event loop busy that long).
  step = 3000
  await clock.sync()
  step = 0
  t.equal(clock.now().getTime() - before, 6000, 'the earlier reading still tells the time, moved on by the monotonic clock')
})

t.test('keepSynced reads one at a time: a read that hangs is not joined by another every tick, each holding a connection', async (t) => {
  const url = await createTestDatabase(t)
  const { db, close } = connect(url, 1)
  t.teardown(close)
  let reads = 0
  // The monotonic clock is read twice per sync, both once the connection is in hand.
  const clock = DatabaseClock.fromHostOffset(db, 0, { monotonicMs: () => { reads++; return performance.now() } })
  const readsBefore = reads
  // The pool's one connection held: every sync waits, as one hung on a silent network would.
  const release = await holdOnlyConnection(db)
  const stop = clock.keepSynced(10, () => {})
  await new Promise((resolve) => setTimeout(resolve, 300))
  stop()
  await release()
  // Whatever was queued behind the held connection runs now: the first sync, then any queued after it.
  const synced = (): boolean => reads - readsBefore >= 2
  for (let i = 0; i < 500 && !synced(); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(reads - readsBefore, 2, 'one sync ran, not one per tick of the wait')
})

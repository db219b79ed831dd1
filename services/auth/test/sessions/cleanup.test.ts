/**
 * DESIGN, Data: "A cleanup job deletes what has expired, in batches, one
 * instance at a time." On a real database: a round deletes at most
 * batchSize × maxBatches rows of each table and leaves the rest to the next
 * round, and a round that finds another holding the cleanup lock does nothing.
 */
import t from 'tap'
import pg from 'pg'
import { sql } from 'kysely'
import { SESSION_CLEANUP_LOCK } from '../../src/db/locks.js'
import { cleanupExpired, type CleanupOptions } from '../../src/sessions/cleanup.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { sessionWithToken } from '../helpers/session-fixture.js'

const DAY = 86_400_000
const RETENTION = { revokedRetention: 7 * 86_400, auditRetention: 30 * 86_400 }

t.test('a round deletes in batches of batchSize, at most maxBatches of them, and the next round takes the rest', async (t) => {
  const { db } = await testConnection(t)
  const now = new Date()
  // Five sessions whose token and session expired a day ago, one live.
  for (let i = 0; i < 5; i++) await sessionWithToken(db, new Date(now.getTime() - 2 * DAY))
  const live = await sessionWithToken(db, now)
  // Five audit rows past the retention, written at the dates they claim.
  await db.insertInto('audit_events').values([1, 2, 3, 4, 5].map((i) => ({ type: 'login.succeeded', occurred_at: new Date(now.getTime() - (30 + i) * DAY) }))).execute()
  const options: CleanupOptions = { now, ...RETENTION, batchSize: 2, maxBatches: 2 }

  const first = await cleanupExpired(db, options)
  // Four sessions in two batches of two, their tokens with them (ON DELETE CASCADE); the fifth's token is expired on its own.
  t.same(first, { ran: true, sessions: 4, refreshTokens: 1, auditEvents: 4, behind: true }, 'two batches of two of each table, no more, and it says rows may be left')
  const pruned = await db.selectFrom('audit_events').select(sql<number>`(detail->>'deleted')::int`.as('deleted')).where('type', '=', 'audit.pruned').orderBy('id').execute()
  t.same(pruned.map((row) => row.deleted), [2, 2], 'each audit batch leaves its own audit.pruned row')

  const second = await cleanupExpired(db, options)
  t.same(second, { ran: true, sessions: 1, refreshTokens: 0, auditEvents: 1, behind: false }, 'the next round deletes what the first left, and ran out of rows')
  const third = await cleanupExpired(db, options)
  t.same(third, { ran: true, sessions: 0, refreshTokens: 0, auditEvents: 0, behind: false }, 'then nothing is left')

  t.same((await db.selectFrom('sessions').select('id').execute()).map((row) => row.id), [live.sessionId], 'the live session stays')
  t.same((await db.selectFrom('refresh_tokens').select('jti').execute()).map((row) => row.jti), [live.jti], 'and its token')
})

t.test('one instance at a time: a round that finds the cleanup lock held does nothing, and says so', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const now = new Date()
  const expired = await sessionWithToken(db, new Date(now.getTime() - 2 * DAY))
  // Another instance's round in progress: it holds the session-level lock on a connection of its own.
  const other = new pg.Client({ connectionString: url })
  await other.connect()
  t.teardown(async () => { await other.end() })
  await other.query('SELECT pg_advisory_lock($1)', [SESSION_CLEANUP_LOCK])

  t.same(await cleanupExpired(db, { now, ...RETENTION }), { ran: false, sessions: 0, refreshTokens: 0, auditEvents: 0, behind: false }, 'skipped, without waiting')
  t.equal((await db.selectFrom('sessions').select('id').where('id', '=', expired.sessionId).execute()).length, 1, 'the expired session is still there')

  await other.query('SELECT pg_advisory_unlock($1)', [SESSION_CLEANUP_LOCK])
  t.same(await cleanupExpired(db, { now, ...RETENTION }), { ran: true, sessions: 1, refreshTokens: 0, auditEvents: 0, behind: false }, 'the next round, the lock free, runs')
  const { rows } = await other.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [SESSION_CLEANUP_LOCK])
  t.equal(rows[0]?.locked, true, 'and let go of the lock when it ended')
})

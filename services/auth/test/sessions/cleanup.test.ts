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
import type { Db } from '../../src/db/database.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { sessionWithToken } from '../helpers/session-fixture.js'

const DAY = 86_400_000
const RETENTION = { revokedRetention: 7 * 86_400, auditRetention: 30 * 86_400 }

t.test('a round deletes in batches of batchSize, at most maxBatches of them, and the next round takes the rest', async (t) => {
  const { db } = await testConnection(t)
  const now = new Date()
  // Five sessions that expired a day ago, four with their token (expired too), the fifth's deleted by an earlier round; one live.
  for (let i = 0; i < 4; i++) await sessionWithToken(db, new Date(now.getTime() - 2 * DAY))
  await db.deleteFrom('refresh_tokens').where('jti', '=', (await sessionWithToken(db, new Date(now.getTime() - 2 * DAY))).jti).execute()
  const live = await sessionWithToken(db, now)
  // Five audit rows past the retention, written at the dates they claim.
  await db.insertInto('audit_events').values([1, 2, 3, 4, 5].map((i) => ({ type: 'login.succeeded', occurred_at: new Date(now.getTime() - (30 + i) * DAY) }))).execute()
  const options: CleanupOptions = { now, ...RETENTION, batchSize: 2, maxBatches: 2 }

  const first = await cleanupExpired(db, options)
  // Expired tokens first, in two batches of two; then four of the sessions, in two batches of two, each first emptied of tokens (none left).
  t.same(first, { ran: true, sessions: 4, refreshTokens: 4, auditEvents: 4, behind: true }, 'two batches of two of each table, no more, and it says rows may be left')
  const pruned = await db.selectFrom('audit_events').select(sql<number>`(detail->>'deleted')::int`.as('deleted')).where('type', '=', 'audit.pruned').orderBy('id').execute()
  t.same(pruned.map((row) => row.deleted), [2, 2], 'each audit batch leaves its own audit.pruned row')

  const second = await cleanupExpired(db, options)
  t.same(second, { ran: true, sessions: 1, refreshTokens: 0, auditEvents: 1, behind: false }, 'the next round deletes what the first left, and ran out of rows')
  const third = await cleanupExpired(db, options)
  t.same(third, { ran: true, sessions: 0, refreshTokens: 0, auditEvents: 0, behind: false }, 'then nothing is left')

  t.same((await db.selectFrom('sessions').select('id').execute()).map((row) => row.id), [live.sessionId], 'the live session stays')
  t.same((await db.selectFrom('refresh_tokens').select('jti').execute()).map((row) => row.jti), [live.jti], 'and its token')
})

/**
 * Notes each row deleted from sessions and refresh_tokens, cascades included
 * (they are DELETEs too), with the transaction that deleted it: cleanup runs
 * each statement on its own, so rows per transaction are rows per statement.
 */
async function noteDeletes (db: Db): Promise<() => Promise<Array<{ table: string, rows: number }>>> {
  await sql`
    CREATE TABLE deleted_rows (xact xid8 NOT NULL, table_name text NOT NULL);
    CREATE FUNCTION note_delete () RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO deleted_rows VALUES (pg_current_xact_id(), TG_TABLE_NAME); RETURN OLD; END $$;
    CREATE TRIGGER note_delete AFTER DELETE ON refresh_tokens FOR EACH ROW EXECUTE FUNCTION note_delete();
    CREATE TRIGGER note_delete AFTER DELETE ON sessions FOR EACH ROW EXECUTE FUNCTION note_delete();
  `.execute(db)
  return async () => {
    const { rows } = await sql<{ table: string, rows: number }>`
      SELECT string_agg(DISTINCT table_name, '+' ORDER BY table_name) AS table, count(*)::int AS rows
      FROM deleted_rows GROUP BY xact ORDER BY min(table_name), count(*) DESC`.execute(db)
    return rows
  }
}

t.test('a session ended long ago with many refresh tokens is deleted in statements of at most batchSize rows, its cascade included', async (t) => {
  const { db } = await testConnection(t)
  const now = new Date()
  const statements = await noteDeletes(db)
  // A busy session, revoked 8 days ago (past the 7 days' retention): one row
  // per refresh, each used token kept until its own expiry, still 20 days off.
  const busy = await sessionWithToken(db, new Date(now.getTime() - 30 * DAY))
  await db.deleteFrom('refresh_tokens').where('session_id', '=', busy.sessionId).execute()
  await sql`UPDATE sessions SET revoked_at = ${new Date(now.getTime() - 8 * DAY)}, revoke_reason = 'revoke' WHERE id = ${busy.sessionId}`.execute(db)
  await sql`
    WITH chain AS (SELECT i, gen_random_uuid() AS jti FROM generate_series(1, 500) i),
    linked AS (SELECT i, jti, lag(jti) OVER (ORDER BY i) AS parent, lead(jti) OVER (ORDER BY i) AS successor FROM chain)
    INSERT INTO refresh_tokens (jti, session_id, parent_jti, kid, issued_at, expires_at, used_at, successor_jti)
    SELECT jti, ${busy.sessionId}::uuid, parent, ${busy.kid}, ${now}::timestamptz - make_interval(mins => 5 * (500 - i) + 10), ${now}::timestamptz + interval '20 days',
      CASE WHEN successor IS NULL THEN NULL ELSE ${now}::timestamptz - make_interval(mins => 5 * (500 - i)) END, successor
    FROM linked`.execute(db)
  const live = await sessionWithToken(db, now)
  await sql`DELETE FROM deleted_rows`.execute(db)
  const options: CleanupOptions = { now, ...RETENTION, batchSize: 50, maxBatches: 1 }

  const first = await cleanupExpired(db, options)
  t.same(first, { ran: true, sessions: 0, refreshTokens: 50, auditEvents: 0, behind: true }, 'one batch of 50 tokens, the session left for when it has none, and it says rows are left')
  const left = await db.selectFrom('refresh_tokens').select('jti').where('session_id', '=', busy.sessionId).execute()
  t.equal(left.length, 450, 'the other 450 tokens are still there')

  const rounds = [first]
  while (rounds.at(-1)?.behind === true && rounds.length < 20) rounds.push(await cleanupExpired(db, options))
  t.equal(rounds.length, 11, 'ten rounds of 50 tokens, then one that finds none left and deletes the session')
  t.same(rounds.at(-1), { ran: true, sessions: 1, refreshTokens: 0, auditEvents: 0, behind: false }, 'the last ran out of rows')
  t.same([rounds.reduce((n, r) => n + r.refreshTokens, 0), rounds.reduce((n, r) => n + r.sessions, 0)], [500, 1], 'every token counted, and the session')
  const deleted = await statements()
  t.same(deleted, [
    ...Array.from({ length: 10 }, () => ({ table: 'refresh_tokens', rows: 50 })),
    { table: 'sessions', rows: 1 }
  ], 'each statement deleted its batch and no more: the session\'s delete cascaded to nothing')

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
  t.same(await cleanupExpired(db, { now, ...RETENTION }), { ran: true, sessions: 1, refreshTokens: 1, auditEvents: 0, behind: false }, 'the next round, the lock free, runs')
  const { rows } = await other.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [SESSION_CLEANUP_LOCK])
  t.equal(rows[0]?.locked, true, 'and let go of the lock when it ended')
})

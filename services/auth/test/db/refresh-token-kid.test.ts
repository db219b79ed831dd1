/**
 * refresh_tokens.kid is indexed by a BRIN bloom index (migration 0007): the
 * rare paths that look tokens up by key (revoking a key, the key timer's
 * sweep) still find every one of them, and the index lets a lookup skip the
 * page ranges that hold only other keys' tokens. A revoke that ends more
 * sessions than one INSERT could audit still ends and audits each.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import type { Db } from '../../src/db/database.js'
import { endSessions } from '../../src/sessions/end.js'
import { testConnection } from '../helpers/db.js'

const DAY = 86_400_000
/** More than one range of 128 pages (about 60 tokens a page at fillfactor 80). */
const OLD_KEY_TOKENS = 12_000

async function addKey (db: Db): Promise<string> {
  const kid = `k-${randomUUID()}`
  await db.insertInto('signing_keys').values({ kid, state: 'previous', bits: 2048, public_jwk: JSON.stringify({ kty: 'RSA' }), private_key_enc: Buffer.from('x') }).execute()
  return kid
}

/** `count` sessions of one user, each with one token signed by `kid`, written in one statement each. */
async function sessionsWithTokens (db: Db, userId: string, kid: string, count: number, now: Date): Promise<void> {
  const expires = new Date(now.getTime() + DAY)
  await sql`
    WITH made AS (
      INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at, expires_at, absolute_expires_at)
        SELECT gen_random_uuid(), ${userId}, 'tessera', 'read', ${now}, ${now}, ${expires}, ${expires} FROM generate_series(1, ${count})
        RETURNING id)
    INSERT INTO refresh_tokens (jti, session_id, kid, issued_at, expires_at) SELECT gen_random_uuid(), id, ${kid}, ${now}, ${expires} FROM made`.execute(db)
}

/** The plan of a lookup by kid, read by a bitmap scan of the index (the planner would rather scan a table this small). */
async function lookupPlan (db: Db, kid: string): Promise<string> {
  return await db.connection().execute(async (conn) => {
    await sql`SET enable_seqscan = off`.execute(conn)
    try {
      const { rows } = await sql<{ 'QUERY PLAN': string }>`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT session_id FROM refresh_tokens WHERE kid = ${kid}`.execute(conn)
      return rows.map((row) => row['QUERY PLAN']).join('\n')
    } finally {
      await sql`RESET enable_seqscan`.execute(conn)
    }
  })
}

const lossyBlocks = (plan: string): number => Number(/Heap Blocks: lossy=(\d+)/.exec(plan)?.[1] ?? NaN)

t.test('a key revoke ends exactly the sessions holding its tokens, in summarized and unsummarized page ranges alike', async (t) => {
  const { db } = await testConnection(t)
  const now = new Date()
  const user = await db.insertInto('users').values({ username: `u-${randomUUID().slice(0, 8)}`, password_hash: 'x' }).returning('id').executeTakeFirstOrThrow()
  const oldKey = await addKey(db)
  const newKey = await addKey(db)
  await sessionsWithTokens(db, user.id, oldKey, OLD_KEY_TOKENS, now)
  // As a vacuum does: the full ranges get their summary; the pages written after stay unsummarized.
  await sql`SELECT brin_summarize_new_values('refresh_tokens_kid')`.execute(db)
  await sessionsWithTokens(db, user.id, newKey, 500, now)
  await sessionsWithTokens(db, user.id, oldKey, 20, now)

  const { rows: [pages] } = await sql<{ n: number }>`SELECT pg_relation_size('refresh_tokens') / current_setting('block_size')::int AS n`.execute(db)
  const newKeyPlan = await lookupPlan(db, newKey)
  t.match(newKeyPlan, /Bitmap Index Scan on refresh_tokens_kid/, 'a lookup by kid reads the index')
  t.ok(lossyBlocks(newKeyPlan) < Number(pages?.n) - 100,
    `the new key's lookup skips the summarized ranges, which hold only the old key (${lossyBlocks(newKeyPlan)} of ${pages?.n} pages read)`, { plan: newKeyPlan })

  const ended = await db.transaction().execute(async (trx) => await endSessions(trx, { kid: newKey }, 'key_revoked', now, { actor: 'test' }))
  t.equal(ended, 500, 'every session holding a token of the revoked key ended')
  const { rows: [live] } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM sessions WHERE revoked_at IS NULL`.execute(db)
  t.equal(live?.n, OLD_KEY_TOKENS + 20, 'and only those')
  t.match(await lookupPlan(db, oldKey), new RegExp(`rows=${OLD_KEY_TOKENS + 20}\\b`), 'the other key\'s lookup finds its tokens in both kinds of range')
  // More sessions than one INSERT of their audit rows could carry (65,535 parameters, 10 an event).
  const endedOld = await db.transaction().execute(async (trx) => await endSessions(trx, { kid: oldKey }, 'key_revoked', now, { actor: 'test' }))
  t.equal(endedOld, OLD_KEY_TOKENS + 20, 'its own revoke ends them all, each with its audit row')
  const { rows: [audited] } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_events WHERE type = 'session.ended' AND kid = ${oldKey}`.execute(db)
  t.equal(audited?.n, OLD_KEY_TOKENS + 20)
})

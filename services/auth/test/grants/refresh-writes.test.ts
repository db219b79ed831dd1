/**
 * What a rotation costs Postgres (migration 0006): the session's slide and
 * the token's mark-used are HOT updates (no new index entries), even when
 * the token sits on a page filled by the tokens inserted after it.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { connect } from '../../src/db/connect.js'
import type { Db } from '../../src/db/database.js'
import { refreshDecision } from '../../src/grants/refresh-decisions.js'
import { createTestDatabase } from '../helpers/db.js'
import { sessionWithToken } from '../helpers/session-fixture.js'

const DAY = 86_400_000

interface Updates { sessions: number, sessionsHot: number, tokens: number, tokensHot: number }

/** The table counters, flushed from this connection's server process first (one connection: it is the one that rotated). */
async function updates (db: Db): Promise<Updates> {
  await sql`SELECT pg_stat_force_next_flush()`.execute(db)
  await sql`SELECT pg_stat_clear_snapshot()`.execute(db)
  const { rows } = await sql<{ relname: string, upd: number, hot: number }>`
    SELECT relname, n_tup_upd::int AS upd, n_tup_hot_upd::int AS hot FROM pg_stat_user_tables WHERE relname IN ('sessions', 'refresh_tokens')`.execute(db)
  const of = (name: string): { upd: number, hot: number } => rows.find((r) => r.relname === name) ?? { upd: 0, hot: 0 }
  return { sessions: of('sessions').upd, sessionsHot: of('sessions').hot, tokens: of('refresh_tokens').upd, tokensHot: of('refresh_tokens').hot }
}

t.test('a rotation updates the session and the used token in place (HOT)', async (t) => {
  const connection = connect(await createTestDatabase(t), 1)
  t.teardown(connection.close)
  const { db } = connection
  const now = new Date(Math.floor(Date.now() / 1000) * 1000)
  // An hour ago, so the slide moves expires_at (the BRIN-indexed column) to a new value.
  const created = new Date(now.getTime() - 3_600_000)
  const { userId, sessionId, jti, kid } = await sessionWithToken(db, created)
  const token = { session_id: sessionId, kid, issued_at: created, expires_at: new Date(created.getTime() + DAY) }
  // Enough later tokens to fill the first page as far as the table lets inserts fill it.
  await db.insertInto('refresh_tokens').values(Array.from({ length: 300 }, () => ({ jti: randomUUID(), ...token }))).execute()
  const before = await updates(db)
  const row = await refreshDecision(db, {
    claims: { jti, sid: sessionId, sub: userId },
    wantedScope: undefined,
    now,
    graceSeconds: 10,
    ttlSeconds: DAY / 1000,
    successorJti: randomUUID(),
    successorKid: kid,
    context: {}
  })
  t.equal(row.decision, 'rotated')
  const session = await db.selectFrom('sessions').select('expires_at').where('id', '=', sessionId).executeTakeFirstOrThrow()
  t.not(session.expires_at.getTime(), created.getTime() + DAY, 'the slide changed expires_at')
  const after = await updates(db)
  t.same({ sessions: after.sessions - before.sessions, sessionsHot: after.sessionsHot - before.sessionsHot },
    { sessions: 1, sessionsHot: 1 }, 'the session slid in place')
  t.same({ tokens: after.tokens - before.tokens, tokensHot: after.tokensHot - before.tokensHot },
    { tokens: 1, tokensHot: 1 }, 'the token was marked used in place, on a page the later tokens filled')
})

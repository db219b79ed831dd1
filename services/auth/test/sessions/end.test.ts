/**
 * Ending sessions (sessions/end.ts) at a session's expiry edge: a refresh
 * judges expiry by the time it read when it began (or by its own instance's
 * clock), so a session the ending's `now` finds just expired may still be
 * live to a refresh in flight. It is ended all the same; only its count and
 * its audit row are left out.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { endSessions } from '../../src/sessions/end.js'
import { refreshDecision } from '../../src/grants/refresh-decisions.js'
import { testConnection } from '../helpers/db.js'
import { sessionWithToken } from '../helpers/session-fixture.js'

const DAY = 86_400_000

t.test('a session just past its expiry by the ending\'s clock is ended, not counted, not audited; a refresh that read an earlier time finds it ended', async (t) => {
  const { db } = await testConnection(t)
  const created = new Date(Date.now() - DAY + 1000)
  const edge = await sessionWithToken(db, created)
  const expiresAt = created.getTime() + DAY
  const ending = new Date(expiresAt + 10)

  t.equal(await endSessions(db, { userId: edge.userId }, 'password_change', ending), 0, 'not counted: by this clock it was over')
  const row = await db.selectFrom('sessions').select(['revoked_at', 'revoke_reason']).where('id', '=', edge.sessionId).executeTakeFirstOrThrow()
  t.same([row.revoked_at?.getTime(), row.revoke_reason], [ending.getTime(), 'password_change'], 'but ended')
  t.equal((await db.selectFrom('audit_events').select('id').where('session_id', '=', edge.sessionId).execute()).length, 0, 'and not audited')

  const refresh = await refreshDecision(db, {
    claims: { jti: edge.jti, sid: edge.sessionId, sub: edge.userId },
    wantedScope: undefined,
    now: new Date(expiresAt - 50),
    graceSeconds: 0,
    ttlSeconds: 3600,
    successorJti: randomUUID(),
    successorKid: edge.kid,
    context: {}
  })
  t.equal(refresh.decision, 'session revoked', 'a refresh that began 50 ms before the expiry does not rotate it')

  const live = await sessionWithToken(db, new Date())
  t.equal(await endSessions(db, { userId: live.userId }, 'password_change', new Date()), 1, 'a live one is counted')
  t.equal((await db.selectFrom('audit_events').select('id').where('session_id', '=', live.sessionId).execute()).length, 1, 'and audited')
})

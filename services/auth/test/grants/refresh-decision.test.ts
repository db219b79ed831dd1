/**
 * tessera_refresh_grant (migrations/0016_reuse_by_another_client.js) against a
 * real Postgres, one decision at a time, through the same call refreshGrant
 * makes. Each case checks what the function wrote, not only what it said.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { refreshDecision, type RefreshDecisionInput, type RefreshDecisionRow } from '../../src/grants/refresh-decisions.js'
import { testConnection } from '../helpers/db.js'
import { DAY, fixture, type Fixture, GRACE, input, NOW, snapshot, TTL } from '../helpers/refresh-fixture.js'

t.test('rotated: marks the token used, inserts the successor, slides the session', async (t) => {
  const { db } = await testConnection(t)
  const f = await fixture(db)
  const call = input(f)
  const row = await refreshDecision(db, call)
  const issued = new Date(Math.floor(NOW.getTime() / 1000) * 1000)
  const expires = new Date(issued.getTime() + TTL * 1000)
  t.same(row, {
    decision: 'rotated',
    successor_jti: call.successorJti,
    successor_kid: f.kid,
    successor_issued_at: issued,
    successor_expires_at: expires,
    session_client_id: 'tessera',
    session_scope: 'read write'
  })
  const used = await db.selectFrom('refresh_tokens').selectAll().where('jti', '=', f.jti).executeTakeFirstOrThrow()
  t.same([used.used_at, used.successor_jti], [NOW, call.successorJti], 'the presented token is used, pointing at its successor')
  const successor = await db.selectFrom('refresh_tokens').selectAll().where('jti', '=', call.successorJti).executeTakeFirstOrThrow()
  t.match(successor, { session_id: f.sessionId, parent_jti: f.jti, kid: f.kid, issued_at: issued, expires_at: expires, used_at: null })
  const session = await db.selectFrom('sessions').selectAll().where('id', '=', f.sessionId).executeTakeFirstOrThrow()
  t.match(session, { last_used_at: NOW, expires_at: expires, ip: '192.0.2.7', user_agent: 'new agent', revoked_at: null })

  const quiet = await fixture(db)
  await refreshDecision(db, input(quiet, { context: {} }))
  t.match(await db.selectFrom('sessions').selectAll().where('id', '=', quiet.sessionId).executeTakeFirstOrThrow(),
    { ip: '10.0.0.1', user_agent: 'old agent' }, 'no ip or agent given: the stored ones stay')
})

t.test('grace: a used token inside the window gets the stored successor, and nothing is written', async (t) => {
  const { db } = await testConnection(t)
  const f = await fixture(db)
  const first = await refreshDecision(db, input(f))
  const after = await snapshot(f)
  const later = new Date(NOW.getTime() + GRACE * 1000)
  const again = await refreshDecision(db, input(f, { now: later }))
  t.same(again, { ...first, decision: 'grace' }, 'the same successor, at the end of the window too')
  t.same(await snapshot(f), after, 'no second successor, no slide')
})

t.test('reuse: a used token after the window is reported and the function writes nothing', async (t) => {
  const { db } = await testConnection(t)
  const f = await fixture(db)
  await refreshDecision(db, input(f))
  const after = await snapshot(f)
  const row = await refreshDecision(db, input(f, { now: new Date(NOW.getTime() + GRACE * 1000 + 1) }))
  t.equal(row.decision, 'reuse')
  t.equal(row.successor_jti, null, 'no successor handed out')
  t.same(await snapshot(f), after, 'ending the family is the caller\'s transaction')

  const noGrace = await fixture(db)
  await refreshDecision(db, input(noGrace, { graceSeconds: 0 }))
  t.equal((await refreshDecision(db, input(noGrace, { graceSeconds: 0, now: new Date(NOW.getTime() + 1) }))).decision, 'reuse', 'a zero grace makes any second use reuse')
})

t.test('another client: its used token past the window is reuse; unused, inside the window or of an ended session, a refusal that writes nothing', async (t) => {
  const { db } = await testConnection(t)
  await db.insertInto('clients').values({ client_id: 'mobile', confidential: false, grants: ['refresh_token'], scopes: [], resources: [] }).execute()
  const f = await fixture(db)
  const byMobile = (now: Date): RefreshDecisionInput => input(f, { presentingClient: 'mobile', now })
  const refusedRow = { decision: 'another client', successor_jti: null, successor_kid: null, successor_issued_at: null, successor_expires_at: null, session_client_id: null, session_scope: null }

  const unused = await snapshot(f)
  t.same(await refreshDecision(db, byMobile(NOW)), refusedRow, 'unused: refused')
  t.same(await snapshot(f), unused, 'unused: not marked used, so the owner\'s token is not burned')

  t.equal((await refreshDecision(db, input(f))).decision, 'rotated', 'the owner rotates it')
  const rotated = await snapshot(f)
  t.same(await refreshDecision(db, byMobile(new Date(NOW.getTime() + GRACE * 1000))), refusedRow, 'used, inside the window: refused, without the successor')
  t.same(await snapshot(f), rotated, 'inside the window: nothing written')

  const late = await refreshDecision(db, byMobile(new Date(NOW.getTime() + GRACE * 1000 + 1)))
  t.same(late, { ...refusedRow, decision: 'reuse by another client' }, 'used, past the window: reuse, without the successor')
  t.same(await snapshot(f), rotated, 'past the window: the function writes nothing, ending the family is the caller\'s transaction')

  await db.updateTable('sessions').set({ revoked_at: NOW, revoke_reason: 'reuse' }).where('id', '=', f.sessionId).execute()
  t.same(await refreshDecision(db, byMobile(new Date(NOW.getTime() + GRACE * 1000 + 1))), refusedRow, 'its session already ended: a refusal, nothing left to detect')
})

t.test('reuse precedes the request-shape refusals: a used token past the window is reuse whatever scope or resource it asks for; unused or inside the window, the refusal, nothing written', async (t) => {
  const { db } = await testConnection(t)
  /** The fixture's session may ask for no resource at all, so any one is refused. */
  const shapes: Array<[string, Partial<RefreshDecisionInput>]> = [
    ['scope widened', { wantedScope: ['read', 'admin'] }],
    ['resource not allowed', { resource: 'https://elsewhere.example/' }]
  ]
  const refusal = (decision: string): RefreshDecisionRow => ({ decision, successor_jti: null, successor_kid: null, successor_issued_at: null, successor_expires_at: null, session_client_id: null, session_scope: null })
  for (const [refused, shape] of shapes) {
    const f = await fixture(db)
    const unused = await snapshot(f)
    t.same(await refreshDecision(db, input(f, shape)), refusal(refused), `unused: ${refused}`)
    t.same(await snapshot(f), unused, `unused, ${refused}: not marked used`)

    t.equal((await refreshDecision(db, input(f))).decision, 'rotated')
    const rotated = await snapshot(f)
    t.same(await refreshDecision(db, input(f, { ...shape, now: new Date(NOW.getTime() + GRACE * 1000) })), refusal(refused), `used, inside the window: ${refused}, without the successor`)
    t.same(await snapshot(f), rotated, `inside the window, ${refused}: nothing written`)

    t.same(await refreshDecision(db, input(f, { ...shape, now: new Date(NOW.getTime() + GRACE * 1000 + 1) })), refusal('reuse'), `used, past the window, ${refused} asked: reuse`)
    t.same(await snapshot(f), rotated, `past the window, ${refused} asked: the function writes nothing, ending the family is the caller's transaction`)

    await db.updateTable('sessions').set({ revoked_at: NOW, revoke_reason: 'reuse' }).where('id', '=', f.sessionId).execute()
    t.equal((await refreshDecision(db, input(f, { ...shape, now: new Date(NOW.getTime() + GRACE * 1000 + 1) }))).decision,
      refused === 'scope widened' ? 'session revoked' : refused, 'its session ended: the answer it had before, nothing left to detect')
  }
})

t.test('refusals write nothing', async (t) => {
  const { db } = await testConnection(t)
  const cases: Array<[string, (f: Fixture) => Promise<Partial<RefreshDecisionInput> | undefined>, Parameters<typeof fixture>[1]?]> = [
    ['session revoked', async (f) => { await db.updateTable('sessions').set({ revoked_at: NOW, revoke_reason: 'logout' }).where('id', '=', f.sessionId).execute(); return undefined }],
    ['user disabled', async (f) => { await db.updateTable('users').set({ disabled_at: NOW }).where('id', '=', f.userId).execute(); return undefined }],
    ['signing key revoked', async (f) => { await db.updateTable('signing_keys').set({ state: 'revoked', revoked_at: NOW }).where('kid', '=', f.kid).execute(); return undefined }],
    ['session expired', async () => undefined, { expiresAt: NOW }],
    ['session expired', async () => ({ now: new Date(NOW.getTime() + DAY) })],
    ['session at its absolute limit', async () => undefined, { absoluteExpiresAt: new Date(NOW.getTime() + 500) }],
    ['unknown session', async () => ({ claims: { jti: randomUUID(), sid: randomUUID(), sub: randomUUID() } })],
    ['unknown session', async (f) => ({ claims: { jti: f.jti, sid: f.sessionId, sub: randomUUID() } })],
    ['unknown session', async (f) => ({ claims: { jti: f.jti, sid: f.sessionId, sub: 'not a uuid' } })],
    ['unknown token', async (f) => ({ claims: { jti: randomUUID(), sid: f.sessionId, sub: f.userId } })],
    ['unknown token', async (f) => ({ claims: { jti: (await fixture(db)).jti, sid: f.sessionId, sub: f.userId } })],
    ['scope widened', async () => ({ wantedScope: ['read', 'admin'] })]
  ]
  for (const [decision, arrange, session] of cases) {
    const f = await fixture(db, session)
    const overrides = await arrange(f)
    const before = await snapshot(f)
    const row = await refreshDecision(db, input(f, overrides))
    t.same(row, { decision, successor_jti: null, successor_kid: null, successor_issued_at: null, successor_expires_at: null, session_client_id: null, session_scope: null }, decision)
    t.same(await snapshot(f), before, `${decision}: nothing written`)
  }
})

t.test('a narrower scope is allowed; the successor is capped by the absolute limit, floored to the second', async (t) => {
  const { db } = await testConnection(t)
  const absolute = new Date(NOW.getTime() + 60_500)
  const f = await fixture(db, { absoluteExpiresAt: absolute })
  const row = await refreshDecision(db, input(f, { wantedScope: ['read'] }))
  t.equal(row.decision, 'rotated')
  t.same(row.successor_expires_at, new Date(Math.floor(absolute.getTime() / 1000) * 1000))
  t.equal(row.session_scope, 'read write', 'the session scope comes back for the caller to narrow')
})

t.test('a grace hit whose successor row is gone is refused', async (t) => {
  const { db } = await testConnection(t)
  const f = await fixture(db)
  const first = await refreshDecision(db, input(f))
  await db.deleteFrom('refresh_tokens').where('jti', '=', first.successor_jti ?? '').execute()
  t.equal((await refreshDecision(db, input(f))).decision, 'successor gone')
})

t.test('concurrent calls for one token on separate connections: one rotation, the rest get its successor', async (t) => {
  const connection = await testConnection(t)
  const f = await fixture(connection.db)
  const rows = await Promise.all(Array.from({ length: 8 }, async () => await refreshDecision(connection.db, input(f))))
  t.equal(rows.filter((r) => r.decision === 'rotated').length, 1, 'one rotated')
  t.equal(rows.filter((r) => r.decision === 'grace').length, 7, 'the others are grace hits')
  t.equal(new Set(rows.map((r) => r.successor_jti)).size, 1, 'all carry the one successor')
  const successors = await connection.db.selectFrom('refresh_tokens').select('jti').where('parent_jti', '=', f.jti).execute()
  t.equal(successors.length, 1, 'one successor row')
})

/**
 * Refresh decisions taken together (migrations/0018, grants/refresh-decisions.ts)
 * against a real Postgres: in one call each decision is the one it gets
 * alone, with the same writes; a session held elsewhere is left to a call of
 * its own; one decision's failure is never another's; and RefreshDecisions
 * sends what arrives while its calls are in flight together.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import type { CompiledQuery } from 'kysely'
import type { Db } from '../../src/db/database.js'
import { secretDigest } from '../../src/clients/secret.js'
import { REFRESH_GRANT_SQL, REFRESH_GRANTS_SQL, RefreshDecisions, refreshDecision, refreshDecisionsTogether, SESSION_LOCKED, type RefreshDecisionInput, type RefreshDecisionRow } from '../../src/grants/refresh-decisions.js'
import { createTestDatabase, lockWaiters, testConnection } from '../helpers/db.js'
import { fixture, type Fixture, GRACE, input, NOW, snapshot, TTL } from '../helpers/refresh-fixture.js'

const SECOND = 1000
const refusal = (decision: string): RefreshDecisionRow => ({ decision, successor_jti: null, successor_kid: null, successor_issued_at: null, successor_expires_at: null, session_client_id: null, session_scope: null })
const issuedAt = (at: Date): Date => new Date(Math.floor(at.getTime() / SECOND) * SECOND)

/** The database, counting the statements sent through it by their text. */
function counting (db: Db): { db: Db, sent: (text: string) => number } {
  const texts: string[] = []
  const counted = new Proxy(db, {
    get (target, property) {
      const value: unknown = Reflect.get(target, property)
      if (property === 'executeQuery') {
        return async (query: CompiledQuery) => {
          texts.push(query.sql)
          return await target.executeQuery(query)
        }
      }
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  return { db: counted, sent: (text) => texts.filter((sent) => sent === text).length }
}

/** A RefreshDecisions over `db`, with the statements it sent by text and the size of each call it reported. */
function observed (db: Db): { decisions: RefreshDecisions, sent: (text: string) => number, calls: number[] } {
  const counted = counting(db)
  const decisions = new RefreshDecisions(counted.db)
  const calls: number[] = []
  decisions.observeCalls((size) => calls.push(size))
  return { decisions, sent: counted.sent, calls }
}

t.test('in one call, each decision is the one it gets alone: every parameter reaches its own decision, and each writes what it writes alone', async (t) => {
  const { db } = await testConnection(t)
  await db.insertInto('clients').values([
    { client_id: 'mobile', confidential: false, grants: ['refresh_token'], scopes: [], resources: [] },
    { client_id: 'backend', confidential: true, grants: ['refresh_token'], scopes: [], resources: [], secret_digest: secretDigest('right') }
  ]).execute()
  const fixtures = async (n: number): Promise<Fixture[]> => await Promise.all(Array.from({ length: n }, async () => await fixture(db)))
  const [first, second, widened, elsewhere, mobile, wrongSecret, rightSecret, revoked, keyRevoked, reused, inGrace] = await fixtures(11)
  if (first === undefined || second === undefined || widened === undefined || elsewhere === undefined || mobile === undefined || wrongSecret === undefined ||
    rightSecret === undefined || revoked === undefined || keyRevoked === undefined || reused === undefined || inGrace === undefined) throw new Error('fixtures')
  await db.updateTable('sessions').set({ revoked_at: NOW, revoke_reason: 'logout' }).where('id', '=', revoked.sessionId).execute()
  await db.updateTable('signing_keys').set({ state: 'revoked', revoked_at: NOW }).where('kid', '=', keyRevoked.kid).execute()
  await refreshDecision(db, input(reused, { now: new Date(NOW.getTime() - (GRACE + 1) * SECOND) }))
  const earlier = await refreshDecision(db, input(inGrace, { now: new Date(NOW.getTime() - 5 * SECOND) }))

  const later = new Date(NOW.getTime() + 1500)
  const inputs: Array<[string, RefreshDecisionInput]> = [
    ['rotated', input(first, { wantedScope: ['read'], context: { ip: '192.0.2.1', userAgent: 'agent one' } })],
    ['rotated at its own time', input(second, { now: later, context: { ip: '192.0.2.2', userAgent: 'agent two' } })],
    ['the same token again, later in the call', input(first, { now: later })],
    ['scope widened', input(widened, { wantedScope: ['read', 'admin'] })],
    ['resource not allowed', input(elsewhere, { resource: 'https://elsewhere.example/' })],
    ['another client', input(mobile, { presentingClient: 'mobile' })],
    ['client: wrong secret', input(wrongSecret, { presentingClient: 'backend', presentedSecretDigest: secretDigest('wrong') })],
    ['another client, its secret right', input(rightSecret, { presentingClient: 'backend', presentedSecretDigest: secretDigest('right') })],
    ['session revoked', input(revoked)],
    ['signing key revoked', input(keyRevoked)],
    ['reuse', input(reused)],
    ['grace', input(inGrace)],
    ['no such session', input(first, { claims: { jti: randomUUID(), sid: randomUUID(), sub: first.userId } })]
  ]
  const refused = [widened, elsewhere, mobile, wrongSecret, rightSecret, revoked, keyRevoked, reused, inGrace]
  const before = await Promise.all(refused.map(snapshot))
  const rows = await refreshDecisionsTogether(db, inputs.map(([, call]) => call))
  const row = (name: string): RefreshDecisionRow | undefined => rows[inputs.findIndex(([n]) => n === name)]
  const call = (name: string): RefreshDecisionInput | undefined => inputs.find(([n]) => n === name)?.[1]

  const rotated = (f: Fixture, name: string, at: Date): RefreshDecisionRow => ({
    decision: 'rotated',
    successor_jti: call(name)?.successorJti ?? null,
    successor_kid: f.kid,
    successor_issued_at: issuedAt(at),
    successor_expires_at: new Date(issuedAt(at).getTime() + TTL * SECOND),
    session_client_id: 'tessera',
    session_scope: 'read write'
  })
  t.same(row('rotated'), rotated(first, 'rotated', NOW), 'rotated: its successor, lifetime and the session\'s scope')
  t.same(row('rotated at its own time'), rotated(second, 'rotated at its own time', later), 'each decision at its own time')
  t.same(row('the same token again, later in the call'), { ...row('rotated'), decision: 'grace' }, 'a token twice in one call: the second sees the first\'s rotation, as a second call would')
  for (const name of ['scope widened', 'resource not allowed', 'another client', 'client: wrong secret', 'session revoked', 'signing key revoked', 'reuse']) t.same(row(name), refusal(name), name)
  t.same(row('another client, its secret right'), refusal('another client'), 'the right secret authenticates the client, whose session it is not')
  t.same(row('grace'), { ...earlier, decision: 'grace' }, 'inside the window: the stored successor')
  t.same(row('no such session'), refusal(SESSION_LOCKED), 'no session to lock: left to a call of its own, which names it')

  t.same(await Promise.all(refused.map(snapshot)), before, 'the refusals, reuse and grace wrote nothing')
  const session = async (f: Fixture): Promise<unknown> => await db.selectFrom('sessions').select(['last_used_at', 'ip', 'user_agent']).where('id', '=', f.sessionId).executeTakeFirstOrThrow()
  t.same(await session(first), { last_used_at: NOW, ip: '192.0.2.1', user_agent: 'agent one' }, 'each session slid with its own request\'s time, address and agent')
  t.same(await session(second), { last_used_at: later, ip: '192.0.2.2', user_agent: 'agent two' })
  const used = await db.selectFrom('refresh_tokens').select(['jti', 'used_at', 'successor_jti']).where('jti', 'in', [first.jti, second.jti]).orderBy('used_at').execute()
  t.same(used, [
    { jti: first.jti, used_at: NOW, successor_jti: call('rotated')?.successorJti },
    { jti: second.jti, used_at: later, successor_jti: call('rotated at its own time')?.successorJti }
  ], 'each token used at its own time, pointing at its own successor')
  t.same(await refreshDecisionsTogether(db, []), [], 'nothing to decide: no call')
})

t.test('a session another transaction holds: the call answers session locked for it alone; RefreshDecisions decides it on its own once the lock is gone, and the rest at once', async (t) => {
  const connection = await testConnection(t)
  const { db } = connection
  const [held, free] = [await fixture(db), await fixture(db)]
  const holder = await connection.pool.connect()
  t.teardown(() => { holder.release() })
  const watcher = await connection.pool.connect()
  t.teardown(() => { watcher.release() })
  await holder.query('BEGIN')
  await holder.query('SELECT FROM sessions WHERE id = $1 FOR UPDATE', [held.sessionId])

  const before = await snapshot(held)
  const rows = await refreshDecisionsTogether(db, [input(held), input(free)])
  t.same(rows.map((r) => r.decision), [SESSION_LOCKED, 'rotated'], 'the held one is left, the other decided without waiting')
  t.same(await snapshot(held), before, 'nothing written for the held one')

  const decisions = new RefreshDecisions(db)
  const waiting = decisions.decide(input(held))
  const others = await Promise.all([fixture(db), fixture(db), fixture(db)].map(async (f) => await decisions.decide(input(await f))))
  t.same(others.map((r) => r.decision), ['rotated', 'rotated', 'rotated'], 'refreshes of other sessions are answered while it waits')
  t.ok(await lockWaiters(watcher) >= 1, 'the held one waits for the lock, as any refresh did')
  await holder.query('COMMIT')
  t.equal((await waiting).decision, 'rotated', 'and is decided once it is released')
})

t.test('one decision whose call fails fails alone: its group\'s others are each decided again on their own', async (t) => {
  const { db } = await testConnection(t)
  const { decisions, sent, calls } = observed(db)
  const fixtures = await Promise.all(Array.from({ length: 6 }, async () => await fixture(db)))
  // Postgres refuses a NUL in text: the whole call fails, one transaction, nothing written.
  const poisoned = 3
  const answers = await Promise.allSettled(fixtures.map(async (f, i) => await decisions.decide(input(f, i === poisoned ? { context: { userAgent: 'bad\u0000agent' } } : {}))))
  t.equal(sent(REFRESH_GRANTS_SQL), 3, 'two sent at once, then the four that waited, together')
  t.equal(sent(REFRESH_GRANT_SQL), 4, 'that call failing, each of its four decided again alone')
  t.same(answers.map((a) => a.status === 'fulfilled' ? a.value.decision : 'failed'), ['rotated', 'rotated', 'rotated', 'failed', 'rotated', 'rotated'], 'only the poisoned decision fails')
  t.match(answers[poisoned], { status: 'rejected', reason: { code: '22021' } }, 'with its own error')
  t.same(calls.sort((a, b) => a - b), [1, 1, 1, 1, 1, 1, 4], 'the observer is told each call\'s size: the failed call of four and each decision sent again alone')
})

t.test('refreshes arriving while calls are in flight go together, at most two calls at once; a quiet process sends each at once', async (t) => {
  const { db } = await testConnection(t)
  const { decisions, sent, calls } = observed(db)
  const fixtures = await Promise.all(Array.from({ length: 70 }, async () => await fixture(db)))
  const rows = await Promise.all(fixtures.map(async (f) => await decisions.decide(input(f))))
  t.ok(rows.every((r) => r.decision === 'rotated'), 'every one rotated')
  t.equal(sent(REFRESH_GRANTS_SQL), 5, 'two sent at once, the 68 that waited in three calls of at most 32')
  t.same(calls, [1, 1, 32, 32, 4], 'and the observer is told each call\'s size')

  const alone = await decisions.decide(input(await fixture(db)))
  t.equal(alone.decision, 'rotated')
  t.equal(sent(REFRESH_GRANTS_SQL), 6, 'one refresh on a quiet process: one call of its own, sent at once')
  t.equal(calls.at(-1), 1)
})

t.test('one token refreshed 50 times at once through two processes\' RefreshDecisions, each its own connections: one rotation, every other answer its successor', async (t) => {
  const url = await createTestDatabase(t)
  const [one, two] = [await testConnection(t, url), await testConnection(t, url)]
  const f = await fixture(one.db)
  const processes = [new RefreshDecisions(one.db), new RefreshDecisions(two.db)]
  const rows = await Promise.all(Array.from({ length: 50 }, async (_, i) => await processes[i % 2]?.decide(input(f, { now: new Date(NOW.getTime() + i) }))))
  t.equal(rows.filter((r) => r?.decision === 'rotated').length, 1, 'one rotated')
  t.equal(rows.filter((r) => r?.decision === 'grace').length, 49, 'the others are grace hits')
  t.equal(new Set(rows.map((r) => r?.successor_jti)).size, 1, 'all carry the one successor')
  t.equal((await one.db.selectFrom('refresh_tokens').select('jti').where('parent_jti', '=', f.jti).execute()).length, 1, 'one successor row')
})

t.test('a call that fails for the database rather than for a value in it (here its statement timeout) fails each of its decisions with that error, none sent again alone, nothing written', async (t) => {
  const url = await createTestDatabase(t)
  const { db, pool } = await testConnection(t, url)
  const { db: impatient } = await testConnection(t, `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent('-c statement_timeout=300')}`)
  const { decisions, sent } = observed(impatient)
  const [first, second, held, free] = [await fixture(db), await fixture(db), await fixture(db), await fixture(db)]
  const holder = await pool.connect()
  t.teardown(() => { holder.release() })
  await holder.query('BEGIN')
  await holder.query('SELECT FROM refresh_tokens WHERE jti = $1 FOR UPDATE', [held.jti])
  const before = await Promise.all([held, free].map(snapshot))
  const answers = await Promise.allSettled([first, second, held, free].map(async (f) => await decisions.decide(input(f))))
  await holder.query('COMMIT')
  t.same(answers.slice(0, 2).map((a) => a.status === 'fulfilled' ? a.value.decision : 'failed'), ['rotated', 'rotated'], 'the two sent at once, alone')
  t.match(answers.slice(2), [{ status: 'rejected', reason: { code: '57014' } }, { status: 'rejected', reason: { code: '57014' } }], 'the call that waited past its timeout on the held token fails both of its decisions')
  t.equal(sent(REFRESH_GRANTS_SQL), 3)
  t.equal(sent(REFRESH_GRANT_SQL), 0, 'neither is sent again alone: the database, not a value, refused it')
  t.same(await Promise.all([held, free].map(snapshot)), before, 'nothing written for either')
})

t.test('text that array literals quote or escape reaches its own decision as it would alone: quotes, backslashes, braces, commas, the word NULL, an empty agent, one cut at 512 inside a surrogate pair', async (t) => {
  const { db } = await testConnection(t)
  const scope = 'read {x,y} a,b NULL (r) x} {'
  const agents = ['a"b', 'c\\d', '{x,y}', 'NULL', '', ' spaced ', `${'x'.repeat(511)}\u{1F600}`, '"{}",\\']
  const wanted = [['{x,y}'], ['a,b'], ['NULL'], ['x}'], ['{'], ['read', '(r)'], undefined, ['{x,y}', 'NULL']]
  /** The same requests, on fresh fixtures, decided alone or together: what each answers and writes. */
  const outcome = async (together: boolean): Promise<unknown[]> => {
    const fixtures = await Promise.all(agents.map(async () => await fixture(db, { scope })))
    const inputs = fixtures.map((f, i) => input(f, { wantedScope: wanted[i], context: { ip: i % 2 === 0 ? undefined : `"1,{2}"\\${i}`, userAgent: agents[i] } }))
    const rows = together ? await refreshDecisionsTogether(db, inputs) : await Promise.all(inputs.map(async (call) => await refreshDecision(db, call)))
    return await Promise.all(fixtures.map(async (f, i) => ({
      decision: rows[i]?.decision,
      own: rows[i]?.successor_jti === inputs[i]?.successorJti,
      session: await db.selectFrom('sessions').select(['ip', 'user_agent', 'last_used_at']).where('id', '=', f.sessionId).executeTakeFirstOrThrow()
    })))
  }
  const alone = await outcome(false)
  t.ok(alone.every((o) => (o as { decision: string }).decision === 'rotated'), 'each rotates alone')
  t.same(await outcome(true), alone, 'and together, with the same address and agent written for each')
})

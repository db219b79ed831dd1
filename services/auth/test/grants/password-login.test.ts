/**
 * The password grant's database work (migrations/0008): the attempt counted
 * and the user read in one statement, the session started in one call. Each
 * outcome against a real Postgres, with the real hasher: what was written,
 * what was hashed, and that the two statements went as named statements.
 */
import t, { type Test } from 'tap'
import { pbkdf2Sync, randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import type { Db } from '../../src/db/database.js'
import { PasswordHasher } from '../../src/passwords/hasher.js'
import { connect } from '../../src/db/connect.js'
import { deleteClient, disableClient } from '../../src/clients/end.js'
import { createClient, type NewClient } from '../../src/clients/register.js'
import { buildTestApp, signUp, TEST_ARGON2, testConfig, type TestApp } from '../helpers/app.js'
import { createTestDatabase } from '../helpers/db.js'

const PASSWORD = 'correct horse battery'

/** The real hasher, counting what the grant asked of it. */
class CountingHasher extends PasswordHasher {
  verifies = 0
  dummies = 0
  /** Run once a verify has hashed, before the grant hears its answer: what commits while a password is hashed. */
  meanwhile: (() => Promise<unknown>) | undefined
  override async verify (hash: string, password: string): Promise<boolean> {
    this.verifies++
    const valid = await super.verify(hash, password)
    await this.meanwhile?.()
    return valid
  }

  override async dummyVerify (password: string): Promise<false> {
    this.dummies++
    return await super.dummyVerify(password)
  }
}

/** With `oneConnection`, every query goes through one Postgres session, whose prepared statements a test can list. */
async function loginApp (t: Test, env: Record<string, string> = {}, oneConnection = false): Promise<TestApp & { hasher: CountingHasher }> {
  const config = testConfig(env)
  const hasher = new CountingHasher({ concurrency: config.hashConcurrency, depth: config.hashQueueDepth, params: TEST_ARGON2 })
  const connection = oneConnection ? connect(await createTestDatabase(t), 1) : undefined
  if (connection !== undefined) t.teardown(connection.close)
  return { ...await buildTestApp(t, env, { hasher, connection }), hasher }
}

async function attempt (app: TestApp['app'], username: string, password: string): Promise<{ status: number, body: Record<string, unknown> }> {
  const res = await app.inject({ method: 'POST', url: '/oauth/token', headers: { 'user-agent': 'login-test' }, payload: { grant_type: 'password', username, password } })
  return { status: res.statusCode, body: res.json() }
}

async function counts (db: Db): Promise<{ sessions: number, tokens: number, throttled: number }> {
  const { rows: [row] } = await sql<{ sessions: number, tokens: number, throttled: number }>`SELECT
    (SELECT count(*)::int FROM sessions) AS sessions, (SELECT count(*)::int FROM refresh_tokens) AS tokens,
    (SELECT count(*)::int FROM login_throttle) AS throttled`.execute(db)
  if (row === undefined) throw new Error('no counts')
  return row
}

async function auditRows (db: Db, type: string): Promise<Array<{ actor: string | null, user_id: string | null, username: string | null, session_id: string | null, user_agent: string | null, request_id: string | null, detail: Record<string, unknown> }>> {
  return await db.selectFrom('audit_events').select(['actor', 'user_id', 'username', 'session_id', 'user_agent', 'request_id', 'detail'])
    .where('type', '=', type).orderBy('id').execute() as never
}

t.test('a login that succeeds: one session, its token and audit row, the failures cleared, in two named statements', async (t) => {
  const { app, connection, hasher, logs } = await loginApp(t, {}, true)
  const user = await signUp(app, 'alice', PASSWORD)
  t.equal((await attempt(app, 'alice', 'wrong')).status, 400)
  t.equal((await counts(connection.db)).throttled, 1, 'the failure is counted')

  const logged = logs().split('\n').filter((line) => line !== '').length
  const ok = await attempt(app, 'Alice', PASSWORD)
  t.equal(ok.status, 200)
  t.equal(logs().split('\n').filter((line) => line !== '').length - logged, 1, 'one log line: the request\'s')
  t.equal(hasher.verifies, 2)
  t.same(await counts(connection.db), { sessions: 1, tokens: 1, throttled: 0 }, 'a session, its first token, and the name\'s failures cleared')
  const session = await connection.db.selectFrom('sessions').selectAll().executeTakeFirstOrThrow()
  t.equal(session.user_id, user.id)
  t.equal(session.client_id, 'tessera')
  t.equal(session.scope, ok.body.scope)
  t.equal(session.user_agent, 'login-test')
  t.equal(session.created_at.getMilliseconds(), 0, 'whole seconds, as the token\'s claims')
  t.ok(session.expires_at <= session.absolute_expires_at)
  const token = await connection.db.selectFrom('refresh_tokens').selectAll().executeTakeFirstOrThrow()
  t.equal(token.session_id, session.id)
  t.equal(token.parent_jti, null)
  t.same([token.issued_at, token.expires_at], [session.created_at, session.expires_at])
  t.equal(Number(ok.body.refresh_expires_in), (token.expires_at.getTime() - token.issued_at.getTime()) / 1000)
  const succeeded = await auditRows(connection.db, 'login.succeeded')
  t.equal(succeeded.length, 1, 'one login, one row')
  t.match(succeeded, [{ actor: user.id, user_id: user.id, username: 'alice', session_id: session.id, user_agent: 'login-test', request_id: /./, detail: {} }])

  const prepared = await sql<{ name: string, calls: number }>`SELECT name, generic_plans + custom_plans AS calls FROM pg_prepared_statements
    WHERE name LIKE 'tessera_%' ORDER BY name`.execute(connection.db)
  t.same(prepared.rows.map((r) => [r.name, Number(r.calls)]), [['tessera_client_read', 2], ['tessera_login_attempt', 2], ['tessera_start_login', 1]],
    'each login read the client, counted the attempt with the user read, and the one that succeeded started in one call: all by name')

  for (let i = 0; i < 2; i++) {
    const me = await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${String(ok.body.access_token)}` } })
    t.equal(me.statusCode, 200)
  }
  const profile = await sql<{ calls: number }>`SELECT generic_plans + custom_plans AS calls FROM pg_prepared_statements WHERE name = 'tessera_live_profile'`.execute(connection.db)
  t.same(profile.rows.map((r) => Number(r.calls)), [2], '/v1/me reads the profile by name: parsed and planned once per connection')
})

t.test('a name in back-off: 429 before any hashing, one audit row, nothing else written', async (t) => {
  const { app, connection, hasher } = await loginApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '2', TESSERA_LOGIN_BACKOFF_BASE: '60s' })
  await signUp(app, 'bob', PASSWORD)
  for (let i = 0; i < 2; i++) t.equal((await attempt(app, 'bob', `wrong ${i}`)).status, 400)
  const verifies = hasher.verifies
  const refused = await attempt(app, 'bob', PASSWORD)
  t.equal(refused.status, 429)
  t.equal(refused.body.error, 'temporarily_unavailable')
  t.equal(hasher.verifies, verifies, 'not hashed')
  t.same(await counts(connection.db), { sessions: 0, tokens: 0, throttled: 1 })
  const backedOff = await auditRows(connection.db, 'login.backed_off')
  t.equal(backedOff.length, 1, 'one audit row')
  t.match(backedOff, [{ actor: 'anonymous', username: 'bob', detail: { retry_after: Number } }])
  const row = await connection.db.selectFrom('login_throttle').selectAll().executeTakeFirstOrThrow()
  t.equal(row.failures, 2, 'a refused attempt is not counted')
})

t.test('unknown user, wrong password, disabled user: the same answer, each hashed, each counted and audited', async (t) => {
  const { app, connection, hasher } = await loginApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '1000' })
  const carol = await signUp(app, 'carol', PASSWORD)
  const dave = await signUp(app, 'dave', PASSWORD)
  await connection.db.updateTable('users').set({ disabled_at: new Date() }).where('id', '=', dave.id).execute()

  const unknown = await attempt(app, 'nobody', PASSWORD)
  // The dummy verify is a full verify of a fixed hash: it counts as both.
  t.same([hasher.dummies, hasher.verifies], [1, 1], 'an unknown user costs the timing-equalising dummy verify')
  const wrong = await attempt(app, 'carol', 'wrong')
  t.same([hasher.dummies, hasher.verifies], [1, 2], 'a wrong password a real one')
  const disabled = await attempt(app, 'dave', PASSWORD)
  t.same([hasher.dummies, hasher.verifies], [1, 3], 'a disabled user a real one too')
  // Imported from Django with an unusable password: no verifier reads `!…`, which would answer at once and tell the account apart.
  const fay = await signUp(app, 'fay', PASSWORD)
  await connection.db.updateTable('users').set({ password_hash: '!unusable-django-password' }).where('id', '=', fay.id).execute()
  const unusable = await attempt(app, 'fay', PASSWORD)
  t.same([hasher.dummies, hasher.verifies], [2, 5], 'a hash nothing reads costs the dummy verify, as an unknown user does')
  t.same(unusable, { status: 400, body: { error: 'invalid_grant', error_description: 'the username or password is incorrect' } })
  for (const answer of [unknown, wrong, disabled]) t.same(answer, { status: 400, body: { error: 'invalid_grant', error_description: 'the username or password is incorrect' } })

  t.same(await counts(connection.db), { sessions: 0, tokens: 0, throttled: 4 }, 'no session; each name counted once')
  const failed = await auditRows(connection.db, 'login.failed')
  t.equal(failed.length, 4)
  t.match(failed, [
    { actor: 'anonymous', user_id: null, username: 'nobody', detail: { reason: 'unknown_user', failures: 1 } },
    { actor: 'anonymous', user_id: carol.id, username: 'carol', detail: { reason: 'wrong_password', failures: 1 } },
    { actor: 'anonymous', user_id: dave.id, username: 'dave', detail: { reason: 'user_disabled', failures: 1 } },
    { actor: 'anonymous', user_id: fay.id, username: 'fay', detail: { reason: 'wrong_password', failures: 1 } }
  ])
})

t.test('a text no user can have as a name (a password typed in the wrong field) is stored nowhere: its back-off key and audit rows say #invalid', async (t) => {
  const { app, connection } = await loginApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '2' })
  t.equal((await attempt(app, 'My Secret Pass!', 'whatever it is')).status, 400)
  t.equal((await attempt(app, 'another secret!', 'whatever it is')).status, 400)
  t.equal((await attempt(app, 'my secret pass!', 'whatever it is')).status, 429, 'such names share one back-off: none of them can ever log in')
  t.equal((await attempt(app, 'dave', 'whatever it is')).status, 400, 'a name a user could have is not held back by it')
  const keys = (await connection.db.selectFrom('login_throttle').select('username').orderBy('username').execute()).map((r) => r.username)
  t.same(keys, ['#invalid', 'dave'])
  const rows = await connection.db.selectFrom('audit_events').selectAll().where('type', 'in', ['login.failed', 'login.backed_off']).orderBy('id').execute()
  t.same(rows.map((r) => [r.type, r.username]), [['login.failed', '#invalid'], ['login.failed', '#invalid'], ['login.backed_off', '#invalid'], ['login.failed', 'dave']], 'the audit rows name the key')
  t.notMatch(JSON.stringify({ keys, rows }), /secret/i, 'the text itself is nowhere')
})

t.test('a Django hash: verified as typed, upgraded to argon2id in the login\'s one call', async (t) => {
  const { app, connection } = await loginApp(t)
  const salt = 'django-salt'
  const django = `pbkdf2_sha256$1000$${salt}$${pbkdf2Sync(PASSWORD, salt, 1000, 32, 'sha256').toString('base64')}`
  const user = await connection.db.insertInto('users').values({ username: 'erin', password_hash: django }).returning('id').executeTakeFirstOrThrow()
  t.equal((await attempt(app, 'erin', PASSWORD)).status, 200)
  const stored = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.match(stored.password_hash, /^\$argon2id\$/, 'the rehash was stored')
  t.same(await counts(connection.db), { sessions: 1, tokens: 1, throttled: 0 })
  t.equal((await attempt(app, 'erin', PASSWORD)).status, 200, 'and verifies next time')
})

interface StartArguments {
  userId: string
  verifiedHash: string
  rehashed: string | null
  key: string
  kid: string
  jti?: string
}

/** Calls tessera_start_login as the grant does, for a session starting now. */
async function startLogin (db: Db, args: StartArguments): Promise<{ started: boolean | null, sessionId: string }> {
  const now = new Date(Math.floor(Date.now() / 1000) * 1000)
  const expires = new Date(now.getTime() + 3600_000)
  const sessionId = randomUUID()
  const { rows: [row] } = await sql<{ started: boolean | null }>`SELECT tessera_start_login(${args.userId}, ${args.verifiedHash}, ${args.rehashed}, ${args.key},
    ${sessionId}, 'tessera', 'read', ${sql`ARRAY[]::text[]`}, ${now}, ${expires}, ${expires}, ${args.jti ?? randomUUID()}, ${args.kid}, '127.0.0.1', 'ua', 'req-1', ${args.key}) AS started`.execute(db)
  return { started: row?.started ?? null, sessionId }
}

t.test('tessera_start_login starts nothing for a password changed or a user disabled since the verify', async (t) => {
  const { app, connection, deps } = await loginApp(t)
  const kid = deps.keyring.signer?.kid ?? ''
  const user = await signUp(app, 'frank', PASSWORD)
  const { password_hash: verified } = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  await connection.db.insertInto('login_throttle').values({ username: 'frank', failures: 1, last_failed_at: new Date() }).execute()

  t.equal((await startLogin(connection.db, { userId: user.id, verifiedHash: 'another hash', rehashed: null, key: 'frank', kid })).started, false, 'changed password: refused')
  t.equal((await startLogin(connection.db, { userId: user.id, verifiedHash: 'another hash', rehashed: 'rehash', key: 'frank', kid })).started, false, 'and no rehash stored over it')
  await connection.db.updateTable('users').set({ disabled_at: new Date() }).where('id', '=', user.id).execute()
  t.equal((await startLogin(connection.db, { userId: user.id, verifiedHash: verified, rehashed: null, key: 'frank', kid })).started, false, 'disabled: refused')
  t.same(await counts(connection.db), { sessions: 0, tokens: 0, throttled: 1 }, 'nothing written, the failure kept')
  t.same(await auditRows(connection.db, 'login.succeeded'), [])
  const { password_hash: after } = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.equal(after, verified)

  await connection.db.updateTable('users').set({ disabled_at: null }).where('id', '=', user.id).execute()
  const started = await startLogin(connection.db, { userId: user.id, verifiedHash: verified, rehashed: 'the rehash', key: 'frank', kid })
  t.equal(started.started, true, 'as verified: started')
  t.same(await counts(connection.db), { sessions: 1, tokens: 1, throttled: 0 })
  const { password_hash: rehashed } = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.equal(rehashed, 'the rehash', 'the rehash stored with it')
  const succeeded = await auditRows(connection.db, 'login.succeeded')
  t.equal(succeeded.length, 1, 'one login, one row')
  t.match(succeeded, [{ actor: user.id, user_id: user.id, username: 'frank', session_id: started.sessionId, user_agent: 'ua', request_id: 'req-1', detail: {} }])
})

t.test('tessera_start_login starts nothing for a client disabled or deleted since it was authenticated: NULL, and not even the rehash written', async (t) => {
  const { app, connection, deps } = await loginApp(t)
  const kid = deps.keyring.signer?.kid ?? ''
  const user = await signUp(app, 'hana', PASSWORD)
  const { password_hash: verified } = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  await connection.db.insertInto('login_throttle').values({ username: 'hana', failures: 1, last_failed_at: new Date() }).execute()
  await connection.db.updateTable('clients').set({ disabled_at: new Date() }).where('client_id', '=', 'tessera').execute()
  t.equal((await startLogin(connection.db, { userId: user.id, verifiedHash: verified, rehashed: 'the rehash', key: 'hana', kid })).started, null, 'disabled client: NULL')
  await connection.db.deleteFrom('clients').where('client_id', '=', 'tessera').execute()
  t.equal((await startLogin(connection.db, { userId: user.id, verifiedHash: verified, rehashed: null, key: 'hana', kid })).started, null, 'deleted client: NULL')
  t.same(await counts(connection.db), { sessions: 0, tokens: 0, throttled: 1 }, 'nothing written, the failure kept')
  const { password_hash: after } = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.equal(after, verified, 'no rehash stored')
})

t.test('a client disabled or deleted while a login\'s password is hashed: the login is 401 invalid_client, and no session of it outlives the client', async (t) => {
  for (const [what, end] of [['disabled', disableClient], ['deleted', deleteClient]] as const) {
    const { app, connection, hasher } = await loginApp(t)
    await signUp(app, 'ines', PASSWORD)
    hasher.meanwhile = async () => { hasher.meanwhile = undefined; return await end(connection.db, 'tessera', () => new Date(), { actor: 'operator' }) }
    const refused = await attempt(app, 'ines', PASSWORD)
    t.same([refused.status, refused.body.error], [401, 'invalid_client'], `${what}: refused as the client's failure`)
    t.same(await counts(connection.db), { sessions: 0, tokens: 0, throttled: 1 }, `${what}: no session started after the client's end`)
    const failures = await auditRows(connection.db, 'client.authentication_failed')
    t.equal(failures.length, 1, `${what}: one row`)
    t.match(failures, [{ detail: { client_id: 'tessera', reason: 'client disabled or deleted during login' } }], `${what}: audited with its reason`)
  }
})

t.test('a client deleted and registered again under its id while a login\'s password is hashed: a registration that no longer allows what the login was granted starts no session of it', async (t) => {
  const old: NewClient = { clientId: 'spa', confidential: false, grants: ['password', 'refresh_token'], scopes: ['read', 'write'], resources: ['urn:example:a', 'urn:example:b'] }
  const cases: Array<[string, NewClient, number]> = [
    ['fewer scopes', { ...old, scopes: ['read'] }, 401],
    ['fewer resources', { ...old, resources: ['urn:example:a'] }, 401],
    ['no password grant', { ...old, grants: ['refresh_token'] }, 401],
    // The same settings: nothing a login could tell apart from the client it authenticated.
    ['the same settings', old, 200]
  ]
  for (const [what, again, status] of cases) {
    const { app, connection, hasher } = await loginApp(t)
    await signUp(app, 'jude', PASSWORD)
    await createClient(connection.db, old, new Date(), { actor: 'operator' })
    hasher.meanwhile = async () => {
      hasher.meanwhile = undefined
      await deleteClient(connection.db, 'spa', () => new Date(), { actor: 'operator' })
      return await createClient(connection.db, again, new Date(), { actor: 'operator' })
    }
    const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'jude', password: PASSWORD, client_id: 'spa' } })
    t.equal(res.statusCode, status, `${what}: ${status === 401 ? 'refused as the client\'s failure' : 'started'}`)
    const live = await connection.db.selectFrom('sessions').select(['client_id', 'scope', 'resources']).where('revoked_at', 'is', null).execute()
    if (status === 401) {
      t.equal(res.json().error, 'invalid_client', what)
      t.same(live, [], `${what}: no session of the old registration under the new one`)
    } else {
      t.same(live, [{ client_id: 'spa', scope: 'read write', resources: old.resources }], what)
    }
  }
})

t.test('a login that fails half-way writes nothing: the session insert and the audit row share the call\'s transaction', async (t) => {
  const { app, connection, deps } = await loginApp(t)
  const kid = deps.keyring.signer?.kid ?? ''
  const user = await signUp(app, 'grace', PASSWORD)
  const { password_hash: verified } = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.equal((await attempt(app, 'grace', PASSWORD)).status, 200)
  const { jti } = await connection.db.selectFrom('refresh_tokens').select('jti').executeTakeFirstOrThrow()
  await connection.db.insertInto('login_throttle').values({ username: 'grace', failures: 1, last_failed_at: new Date() }).execute()
  // A jti already taken: the token insert fails after the rehash, the throttle delete and the session insert.
  await t.rejects(startLogin(connection.db, { userId: user.id, verifiedHash: verified, rehashed: 'the rehash', key: 'grace', kid, jti }), /duplicate key/)
  t.same(await counts(connection.db), { sessions: 1, tokens: 1, throttled: 1 }, 'no second session, the failure kept')
  t.equal((await auditRows(connection.db, 'login.succeeded')).length, 1, 'the first login\'s audit row only')
  const { password_hash: after } = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.equal(after, verified, 'no rehash stored')
})

t.test('two correct logins of a user whose hash is redone: both start, though one stored its rehash while the other was hashing', async (t) => {
  const { app, connection, hasher } = await loginApp(t)
  const user = await signUp(app, 'ivy', PASSWORD)
  const salt = 'ivysalt'
  const django = `pbkdf2_sha256$1000$${salt}$${pbkdf2Sync(PASSWORD, salt, 1000, 32, 'sha256').toString('base64')}`
  await connection.db.updateTable('users').set({ password_hash: django }).where('id', '=', user.id).execute()
  // The second login runs whole while the first's verify has hashed: it stores its rehash first.
  let second: Awaited<ReturnType<typeof attempt>> | undefined
  hasher.meanwhile = async () => { hasher.meanwhile = undefined; second = await attempt(app, 'ivy', PASSWORD) }
  const first = await attempt(app, 'ivy', PASSWORD)
  t.equal(second?.status, 200, 'the login that rehashed')
  t.equal(first.status, 200, 'the one whose verified hash was redone meanwhile: the same password, so it starts too')
  t.same(await counts(connection.db), { sessions: 2, tokens: 2, throttled: 0 })
  t.same(await auditRows(connection.db, 'login.failed'), [], 'and nothing reads as a failed login')
  const { password_hash: stored } = await connection.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.match(stored, /^\$argon2id\$/, 'one rehash stored')

  // A password changed meanwhile is still a refusal: the hash changed, and so did password_changed_at.
  hasher.meanwhile = async () => {
    hasher.meanwhile = undefined
    await connection.db.updateTable('users').set({ password_hash: django, password_changed_at: new Date() }).where('id', '=', user.id).execute()
  }
  const refused = await attempt(app, 'ivy', PASSWORD)
  t.equal(refused.status, 400)
  const failed = await auditRows(connection.db, 'login.failed')
  t.equal(failed.length, 1)
  t.match(failed, [{ detail: { reason: 'user_changed_during_login' } }])
})

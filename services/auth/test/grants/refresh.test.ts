import t from 'tap'
import { sign } from 'node:crypto'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { buildTestApp, login, refresh, signUp, type TestApp } from '../helpers/app.js'
import { cleanupExpired } from '../../src/sessions/cleanup.js'
import { createClient } from '../../src/clients/register.js'
import { PasswordHasher } from '../../src/passwords/hasher.js'
import { lockWaiters } from '../helpers/db.js'
import { within } from '../helpers/http.js'

const PASSWORD = 'correct horse battery'

async function user (ctx: TestApp, name: string): Promise<{ access: string, refresh: string, sid: string }> {
  // Several sessions of one user: sign up only the first time.
  const known = await ctx.connection.db.selectFrom('users').select('id').where('username', '=', name).executeTakeFirst()
  if (known === undefined) await signUp(ctx.app, name, PASSWORD)
  const tokens = await login(ctx.app, name, PASSWORD)
  return { access: tokens.access_token, refresh: tokens.refresh_token, sid: String(decodeJwt(tokens.access_token).sid) }
}

t.test('a chain of 20 refreshes; each used token is refused after the grace', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_GRACE: '5s' })
  const { refresh: first, sid } = await user(ctx, 'alice')
  const used: string[] = []
  let current = first
  for (let i = 0; i < 20; i++) {
    const res = await refresh(ctx.app, current)
    t.equal(res.status, 200, `refresh ${i + 1}`)
    const next = String(res.body.refresh_token)
    t.not(next, current)
    t.equal(decodeJwt(next).sid, sid, 'same session')
    t.equal(decodeJwt(String(res.body.access_token)).sid, sid)
    used.push(current)
    current = next
  }
  ctx.advance(6)
  const old = await refresh(ctx.app, used[3] ?? '')
  t.equal(old.status, 400)
  t.same(old.body, { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' })
  t.equal((await refresh(ctx.app, current)).status, 400, 'reuse ended the session: the newest token is dead too')
})

t.test('grace: the same successor byte for byte; after it, reuse ends the session', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_GRACE: '10s' })
  const { refresh: token, sid } = await user(ctx, 'bob')
  const a = await refresh(ctx.app, token)
  ctx.advance(3)
  const b = await refresh(ctx.app, token)
  t.equal(b.status, 200)
  t.equal(b.body.refresh_token, a.body.refresh_token, 'identical successor string')
  t.not(b.body.access_token, a.body.access_token, 'a fresh access token')
  const aged = Number(a.body.refresh_expires_in) - Number(b.body.refresh_expires_in)
  t.ok(aged >= 3 && aged <= 4, `the successor aged by the 3 s that passed (${aged} s)`)

  ctx.advance(8)
  const late = await refresh(ctx.app, token)
  t.equal(late.status, 400)
  t.equal(late.body.error, 'invalid_grant')
  t.equal((await refresh(ctx.app, String(a.body.refresh_token))).status, 400, 'the successor is dead too')
  const audit = await ctx.connection.db.selectFrom('audit_events').selectAll().where('session_id', '=', sid).orderBy('id').execute()
  t.same(audit.map((e) => e.type), ['login.succeeded', 'session.ended', 'refresh.reuse_detected'], 'reuse is audited, once: a rotation and its replay within the grace are not')
  t.match(audit[1], { detail: { reason: 'reuse' } })
  const session = await ctx.connection.db.selectFrom('sessions').selectAll().where('id', '=', sid).executeTakeFirstOrThrow()
  t.equal(session.revoke_reason, 'reuse')
})

t.test('a replay inside the grace is refused once its session has ended: by logout, a password change, a disabled user', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_GRACE: '10s' })
  const bearer = (token: unknown): Record<string, string> => ({ authorization: `Bearer ${String(token)}` })
  const ends: Array<[string, string, (rotated: Record<string, unknown>, other: { access: string }) => Promise<void>]> = [
    ['logout', 'lou', async (rotated) => { t.equal((await ctx.app.inject({ method: 'POST', url: '/v1/logout', headers: bearer(rotated.access_token) })).statusCode, 200) }],
    ['password change', 'pia', async (_rotated, other) => {
      t.equal((await ctx.app.inject({ method: 'PUT', url: '/v1/password', headers: bearer(other.access), payload: { current_password: PASSWORD, new_password: 'a new password' } })).statusCode, 200)
    }],
    ['disabled user', 'paz', async () => { await (await import('../../src/users/disable.js')).disableUser(ctx.connection.db, 'paz', () => new Date()) }]
  ]
  for (const [name, username, end] of ends) {
    const { refresh: token } = await user(ctx, username)
    const other = await user(ctx, username)
    const rotated = await refresh(ctx.app, token)
    t.equal(rotated.status, 200)
    t.equal((await refresh(ctx.app, token)).body.refresh_token, rotated.body.refresh_token, `${name}: inside the grace, the successor`)
    ctx.advance(1)
    await end(rotated.body, other)
    t.same(await refresh(ctx.app, token), { status: 400, body: { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' } }, `${name}: then, inside the grace still, refused`)
    t.equal((await refresh(ctx.app, String(rotated.body.refresh_token))).status, 400, `${name}: and the successor too`)
  }
})

t.test('replays at once, each judged reuse before the session ended: one detection recorded, one end', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_GRACE: '1s' })
  const { refresh: token, sid } = await user(ctx, 'carol')
  t.equal((await refresh(ctx.app, token)).status, 200)
  ctx.advance(2)
  // Held here, the session's row lock queues every replay's decision; let go,
  // the next decision takes it the moment the one before commits, before
  // that one's answer has even reached Tessera to end the session.
  const held = await ctx.connection.pool.connect()
  t.teardown(() => { held.release() })
  await held.query('BEGIN')
  await held.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [sid])
  const watcher = await ctx.connection.pool.connect()
  t.teardown(() => { watcher.release() })
  const replays = Promise.all(Array.from({ length: 6 }, async () => await refresh(ctx.app, token)))
  t.ok(await within(30_000, async () => await lockWaiters(watcher) >= 6) !== undefined, 'every replay waits for the session')
  await held.query('COMMIT')
  t.same((await replays).map((r) => r.status), [400, 400, 400, 400, 400, 400])
  const audit = await ctx.connection.db.selectFrom('audit_events').select(['type', 'detail']).where('session_id', '=', sid).where('type', 'in', ['refresh.reuse_detected', 'session.ended']).orderBy('id').execute()
  t.same(audit.map((e) => e.type), ['session.ended', 'refresh.reuse_detected'], 'one end, one detection')
  t.match(audit[0], { detail: { reason: 'reuse' } })
})

t.test('another client presenting a used token past the grace: reuse, the session ended and the presenter recorded; the same answer as any token of another client', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_GRACE: '10s', TESSERA_SIMPLEJWT_COMPAT: 'on' })
  await createClient(ctx.deps.db, { clientId: 'web', confidential: false, grants: ['password', 'refresh_token'], scopes: ['read'], resources: [] }, ctx.deps.clock(), { actor: 'operator' })
  await signUp(ctx.app, 'olga', PASSWORD)
  const asWeb = async (refreshToken: string): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'web' } })
    return { status: res.statusCode, body: res.json() }
  }
  const loggedIn = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'olga', password: PASSWORD, client_id: 'web' } })
  const first = String(loggedIn.json().refresh_token)
  const sid = String(decodeJwt(first).sid)
  const refused = { status: 400, body: { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' } }
  const session = async (): Promise<unknown> => await ctx.connection.db.selectFrom('sessions').select(['revoked_at', 'revoke_reason']).where('id', '=', sid).executeTakeFirstOrThrow()

  t.same(await refresh(ctx.app, first), refused, 'unused, by the default client: refused')
  const rotated = await asWeb(first)
  t.equal(rotated.status, 200, 'the refusal did not use it up: its own client rotates it')
  const successor = String(rotated.body.refresh_token)
  ctx.advance(5)
  t.same(await refresh(ctx.app, first), refused, 'used, inside the grace: refused, no successor')
  t.same(await session(), { revoked_at: null, revoke_reason: null }, 'inside the grace: the session lives')

  ctx.advance(6)
  t.same(await refresh(ctx.app, first), refused, 'used, past the grace: the same answer')
  t.match(await session(), { revoked_at: Date, revoke_reason: 'reuse' }, 'and the session is ended')
  t.same(await asWeb(successor), refused, 'the owner\'s valid successor is dead too')
  const audit = await ctx.connection.db.selectFrom('audit_events').select(['type', 'actor', 'detail']).where('session_id', '=', sid).where('type', '<>', 'login.succeeded').orderBy('id').execute()
  t.same(audit, [
    { type: 'session.ended', actor: 'system', detail: { reason: 'reuse' } },
    { type: 'refresh.reuse_detected', actor: 'system', detail: { jti: String(decodeJwt(first).jti), presented_by: 'tessera' } }
  ], 'one detection, naming the client that presented the token')
  t.match(ctx.logs(), '"detail":"refresh token reuse by another client"', 'the log says what happened')

  // SimpleJWT's refresh presents as the default client: another client's spent token is invalid there, as before, not "blacklisted".
  const other = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'olga', password: PASSWORD, client_id: 'web' } })
  const otherFirst = String(other.json().refresh_token)
  t.equal((await asWeb(otherFirst)).status, 200)
  ctx.advance(11)
  const viaSimplejwt = await ctx.app.inject({ method: 'POST', url: '/api/token/refresh/', payload: { refresh: otherFirst } })
  t.same([viaSimplejwt.statusCode, viaSimplejwt.json()], [401, { detail: 'Token is invalid or expired', code: 'token_not_valid' }], 'invalid, as any token of another client, not blacklisted')
  t.match(await ctx.connection.db.selectFrom('sessions').select('revoke_reason').where('id', '=', String(decodeJwt(otherFirst).sid)).executeTakeFirstOrThrow(), { revoke_reason: 'reuse' }, 'and its session ended')
})

t.test('a used token past the grace, replayed with a widened scope or a resource its session may not ask for: reuse, the session ended; inside the grace, the refusal', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_GRACE: '10s' })
  const refused = { status: 400, body: { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' } }
  const asks: Array<[string, Record<string, string>, string]> = [
    ['a widened scope', { scope: 'read admin' }, 'invalid_scope'],
    ['a resource the session may not ask for', { resource: 'https://elsewhere.example/' }, 'invalid_target']
  ]
  for (const [what, ask, refusal] of asks) {
    const { refresh: first, sid } = await user(ctx, 'pia')
    const replay = async (): Promise<{ status: number, body: Record<string, unknown> }> => {
      const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: first, ...ask } })
      return { status: res.statusCode, body: res.json() }
    }
    const session = async (): Promise<unknown> => await ctx.connection.db.selectFrom('sessions').select(['revoked_at', 'revoke_reason']).where('id', '=', sid).executeTakeFirstOrThrow()
    t.match(await replay(), { status: 400, body: { error: refusal } }, `unused, ${what}: refused`)
    const rotated = await refresh(ctx.app, first)
    t.equal(rotated.status, 200, `${what}: the refusal did not use it up`)
    ctx.advance(5)
    t.match(await replay(), { status: 400, body: { error: refusal } }, `used, inside the grace, ${what}: refused`)
    t.same(await session(), { revoked_at: null, revoke_reason: null }, `inside the grace, ${what}: the session lives`)

    ctx.advance(6)
    t.same(await replay(), refused, `used, past the grace, ${what}: reuse's answer`)
    t.match(await session(), { revoked_at: Date, revoke_reason: 'reuse' }, `${what}: the session is ended`)
    t.same(await refresh(ctx.app, String(rotated.body.refresh_token)), refused, `${what}: the owner's valid successor is dead too`)
    const audit = await ctx.connection.db.selectFrom('audit_events').select(['type', 'actor', 'detail']).where('session_id', '=', sid).where('type', '<>', 'login.succeeded').orderBy('id').execute()
    t.same(audit, [
      { type: 'session.ended', actor: 'system', detail: { reason: 'reuse' } },
      { type: 'refresh.reuse_detected', actor: 'system', detail: { jti: String(decodeJwt(first).jti) } }
    ], `${what}: one detection`)
  }
})

t.test('sliding expiry extends; the absolute limit cuts it', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_TTL: '100s', TESSERA_SESSION_MAX: '250s', TESSERA_REFRESH_GRACE: '0' })
  let { refresh: token } = await user(ctx, 'carol')
  ctx.advance(90)
  let res = await refresh(ctx.app, token)
  t.equal(res.status, 200, 'refresh at 90 s of a 100 s life')
  t.equal(res.body.refresh_expires_in, 100, 'slid forward by the full TTL')
  token = String(res.body.refresh_token)
  ctx.advance(90)
  res = await refresh(ctx.app, token)
  t.equal(res.status, 200, 'at 180 s the session lives on')
  const left = Number(res.body.refresh_expires_in)
  t.ok(left >= 68 && left <= 70, `capped by the 250 s absolute limit (${left} s left)`)
  t.equal(res.body.expires_in, left, 'the access token (5 minutes by default) ends with its session, not after it')
  const access = decodeJwt(String(res.body.access_token))
  t.equal(Number(access.exp) - Number(access.iat), left, 'its exp says so too')
  token = String(res.body.refresh_token)
  ctx.advance(71)
  t.equal((await refresh(ctx.app, token)).status, 400, 'past the absolute limit')

  const { refresh: idle } = await user(ctx, 'carol')
  ctx.advance(101)
  t.equal((await refresh(ctx.app, idle)).status, 400, 'an idle session expires after the TTL')
})

t.test('revocation (RFC 7009)', async (t) => {
  const ctx = await buildTestApp(t)
  const revoke = async (payload: Record<string, string>): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await ctx.app.inject({ method: 'POST', url: '/oauth/revoke', payload })
    return { status: res.statusCode, body: res.json() }
  }
  const one = await user(ctx, 'dave')
  t.equal((await revoke({ token: one.refresh })).status, 200)
  t.same(await refresh(ctx.app, one.refresh), { status: 400, body: { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' } },
    'a revoked session cannot refresh, and hears what any refused token hears')
  t.equal((await revoke({ token: one.refresh })).status, 200, 'already revoked: still 200')

  const two = await user(ctx, 'dave')
  t.equal((await revoke({ token: two.access, token_type_hint: 'refresh_token' })).status, 200, 'a wrong hint is only a hint')
  t.equal((await refresh(ctx.app, two.refresh)).status, 400, 'an access token ends its session too')

  const three = await user(ctx, 'dave')
  t.equal((await revoke({ token: 'garbage' })).status, 200)
  t.equal((await revoke({ token: `${three.refresh.slice(0, -4)}AAAA` })).status, 200, 'a bad signature is ignored')
  t.equal((await refresh(ctx.app, three.refresh)).status, 200, 'and ends nothing')
  const malformed = await revoke({ token_type_hint: 'access_token' })
  t.equal(malformed.status, 400)
  t.equal(malformed.body.error, 'invalid_request')
})

t.test('sessions: list, delete own, 404 for others, logout, logout-all, password change, disable', async (t) => {
  const ctx = await buildTestApp(t)
  const get = async (token: string): Promise<Array<Record<string, unknown>>> =>
    (await ctx.app.inject({ method: 'GET', url: '/v1/sessions', headers: { authorization: `Bearer ${token}` } })).json().sessions
  const erin1 = await user(ctx, 'erin')
  const erin2 = await user(ctx, 'erin')
  const erin3 = await user(ctx, 'erin')
  const frank = await user(ctx, 'frank')

  const listed = await get(erin1.access)
  t.equal(listed.length, 3)
  t.same(listed.filter((s) => s.current === true).map((s) => s.id), [erin1.sid])
  t.match(listed[0], { ip: '127.0.0.1', user_agent: 'lightMyRequest', client_id: 'tessera' })

  const foreign = await ctx.app.inject({ method: 'DELETE', url: `/v1/sessions/${frank.sid}`, headers: { authorization: `Bearer ${erin1.access}` } })
  t.equal(foreign.statusCode, 404, "another user's session is not found")
  const unknown = await ctx.app.inject({ method: 'DELETE', url: '/v1/sessions/00000000-0000-4000-8000-000000000000', headers: { authorization: `Bearer ${erin1.access}` } })
  t.equal(unknown.statusCode, 404)
  t.same(foreign.json().detail, unknown.json().detail, 'indistinguishable from a session that does not exist')
  const badId = await ctx.app.inject({ method: 'DELETE', url: '/v1/sessions/not-a-uuid', headers: { authorization: `Bearer ${erin1.access}` } })
  t.equal(badId.statusCode, 400)
  // Ajv's uuid format takes RFC 4122's URN form, which Postgres's uuid type refused: a 500.
  const urn = await ctx.app.inject({ method: 'DELETE', url: '/v1/sessions/urn:uuid:00000000-0000-4000-8000-000000000000', headers: { authorization: `Bearer ${erin1.access}` } })
  t.same([urn.statusCode, urn.json().detail], [400, 'id: must be a UUID'], 'a UUID in its URN form is refused as the schema\'s')

  const deleted = await ctx.app.inject({ method: 'DELETE', url: `/v1/sessions/${erin3.sid}`, headers: { authorization: `Bearer ${erin1.access}` } })
  t.equal(deleted.statusCode, 204)
  t.equal((await refresh(ctx.app, erin3.refresh)).status, 400)
  t.equal((await get(erin1.access)).length, 2)

  const out = await ctx.app.inject({ method: 'POST', url: '/v1/logout', headers: { authorization: `Bearer ${erin2.access}` } })
  t.same(out.json(), { sessions_ended: 1 })
  t.equal((await refresh(ctx.app, erin2.refresh)).status, 400)
  t.equal((await refresh(ctx.app, frank.refresh)).status, 200, "another user's session is untouched")

  const erin4 = await user(ctx, 'erin')
  const all = await ctx.app.inject({ method: 'POST', url: '/v1/logout', headers: { authorization: `Bearer ${erin4.access}` }, payload: { all: true } })
  t.same(all.json(), { sessions_ended: 2 })
  t.equal((await refresh(ctx.app, erin1.refresh)).status, 400)
  t.equal((await refresh(ctx.app, erin4.refresh)).status, 400)

  const g1 = await user(ctx, 'grace')
  const g2 = await user(ctx, 'grace')
  const wrong = await ctx.app.inject({ method: 'PUT', url: '/v1/password', headers: { authorization: `Bearer ${g1.access}` }, payload: { current_password: 'nope nope nope', new_password: 'a new password' } })
  t.equal(wrong.statusCode, 403)
  const weak = await ctx.app.inject({ method: 'PUT', url: '/v1/password', headers: { authorization: `Bearer ${g1.access}` }, payload: { current_password: PASSWORD, new_password: 'short' } })
  t.equal(weak.statusCode, 400)
  const changed = await ctx.app.inject({ method: 'PUT', url: '/v1/password', headers: { authorization: `Bearer ${g1.access}` }, payload: { current_password: PASSWORD, new_password: 'a new password' } })
  t.same(changed.json(), { sessions_ended: 1 })
  const g1Next = await refresh(ctx.app, g1.refresh)
  t.equal(g1Next.status, 200, 'the session that changed the password lives on')
  t.equal((await refresh(ctx.app, g2.refresh)).status, 400, 'every other session ended')
  t.equal((await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'grace', password: PASSWORD } })).statusCode, 400)
  t.equal((await login(ctx.app, 'grace', 'a new password')).token_type, 'Bearer')

  const { disableUser } = await import('../../src/users/disable.js')
  const h1 = await user(ctx, 'heidi')
  const disabled = await disableUser(ctx.connection.db, 'heidi', () => new Date())
  t.match(disabled, { username: 'heidi', sessionsEnded: 1, alreadyDisabled: false })
  t.equal((await refresh(ctx.app, h1.refresh)).status, 400, 'disabling ends the sessions')
  t.equal((await refresh(ctx.app, String(g1Next.body.refresh_token))).status, 200, 'other users untouched')
})

t.test('an expired session is over: a DELETE of it is 404, a logout of all does not count it, and no end is audited for it', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_ACCESS_TTL: '5m', TESSERA_REFRESH_TTL: '10m' })
  const expired = await user(ctx, 'ivan')
  ctx.advance(400)
  const live = await user(ctx, 'ivan')
  // The first session's ten minutes are over; the second's access token has a minute and a half left.
  ctx.advance(201)
  const sessions = (await ctx.app.inject({ method: 'GET', url: '/v1/sessions', headers: { authorization: `Bearer ${live.access}` } })).json().sessions as Array<{ id: string }>
  t.same(sessions.map((s) => s.id), [live.sid], 'the list shows the live one only')
  const deleted = await ctx.app.inject({ method: 'DELETE', url: `/v1/sessions/${expired.sid}`, headers: { authorization: `Bearer ${live.access}` } })
  t.equal(deleted.statusCode, 404, 'as a session that does not exist')
  const all = await ctx.app.inject({ method: 'POST', url: '/v1/logout', headers: { authorization: `Bearer ${live.access}` }, payload: { all: true } })
  t.same(all.json(), { sessions_ended: 1 }, 'the live one alone')
  const ended = await ctx.connection.db.selectFrom('audit_events').select('session_id').where('type', '=', 'session.ended').execute()
  t.same(ended.map((e) => e.session_id), [live.sid], 'one end audited')
})

t.test('logout takes its body form-encoded: all=true and all=false as JSON\'s true and false, any other word a 400', async (t) => {
  const ctx = await buildTestApp(t)
  const form = async (token: string, payload: string): Promise<{ status: number, type: string | undefined, body: Record<string, unknown> }> => {
    const res = await ctx.app.inject({ method: 'POST', url: '/v1/logout', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' }, payload })
    return { status: res.statusCode, type: res.headers['content-type'], body: res.json() }
  }
  const h1 = await user(ctx, 'hana')
  const h2 = await user(ctx, 'hana')
  for (const payload of ['all=yes', 'all=TRUE', 'all=1', 'all=']) {
    const refused = await form(h1.access, payload)
    t.equal(refused.status, 400, `${payload} is refused`)
    t.match(refused.type, /^application\/problem\+json/)
    t.match(refused.body, { title: 'Bad Request', detail: 'all: must be boolean' })
  }
  const json = await ctx.app.inject({ method: 'POST', url: '/v1/logout', headers: { authorization: `Bearer ${h1.access}` }, payload: { all: 'true' } })
  t.equal(json.statusCode, 400, 'a JSON string "true" is still not a boolean')
  t.same(await form(h1.access, 'all=false'), { status: 200, type: 'application/json; charset=utf-8', body: { sessions_ended: 1 } }, 'all=false ends this session only')
  const h2Next = await refresh(ctx.app, h2.refresh)
  t.equal(h2Next.status, 200, 'the other session lives on')

  const h3 = await user(ctx, 'hana')
  t.same((await form(h3.access, 'all=true')).body, { sessions_ended: 2 }, 'all=true ends every session')
  t.equal((await refresh(ctx.app, String(h2Next.body.refresh_token))).status, 400)
})

t.test('bad refresh input: invalid_grant or invalid_request, never 500', async (t) => {
  const ctx = await buildTestApp(t)
  const { refresh: token, access } = await user(ctx, 'ivan')
  const other = await buildTestApp(t, { TESSERA_ISSUER: 'https://other.example' })
  await signUp(other.app, 'ivan', PASSWORD)
  const foreign = (await login(other.app, 'ivan', PASSWORD)).refresh_token
  const [h, p, s] = token.split('.') as [string, string, string]
  const cases: Record<string, string> = {
    'a tampered signature': `${h}.${p}.${s.slice(0, -6)}AAAAAA`,
    'a tampered payload': `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(token), sid: '00000000-0000-4000-8000-000000000000' })).toString('base64url')}.${s}`,
    'an access token': access,
    'another issuer\'s token': foreign,
    garbage: 'garbage'
  }
  for (const [name, value] of Object.entries(cases)) {
    const res = await refresh(ctx.app, value)
    t.equal(res.status, 400, name)
    t.equal(res.body.error, 'invalid_grant', name)
  }
  const missing = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token' } })
  t.equal(missing.statusCode, 400)
  t.equal(missing.json().error, 'invalid_request')
  const wider = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: token, scope: 'read admin' } })
  t.equal(wider.json().error, 'invalid_scope')
  const malformed = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: token, scope: 'read\t' } })
  t.equal(malformed.json().error, 'invalid_scope', 'a tab is not a scope separator, even at the end')
  const narrower = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: token, scope: 'read' } })
  t.equal(narrower.statusCode, 200)
  t.equal(narrower.json().scope, 'read')
})

t.test('a refresh token signed with our key but not shaped as we mint it: invalid_grant, token_not_valid on SimpleJWT\'s refresh, never a 500', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  const { refresh: token } = await user(ctx, 'jules')
  const signer = ctx.deps.keyring.signer
  if (signer === undefined) throw new Error('no signer')
  const header = decodeProtectedHeader(token)
  const claims = decodeJwt(token)
  const now = Number(claims.iat)
  const segment = (text: string): string => Buffer.from(text).toString('base64url')
  const resign = (head: object, body: string): string => {
    const input = `${segment(JSON.stringify(head))}.${segment(body)}`
    return `${input}.${sign('sha256', Buffer.from(input), signer.privateKey).toString('base64url')}`
  }
  const cases: Array<[string, string]> = [
    // A 500 before: Postgres refused the NUL in the refresh decision's sub.
    ['a sub with a NUL', resign(header, JSON.stringify({ ...claims, sub: 'a\u0000b' }))],
    ['a sub that is not a uuid', resign(header, JSON.stringify({ ...claims, sub: 'not-a-uuid' }))],
    // Taken before, where the access token's verifier refused them.
    ['a jwk header', resign({ ...header, jwk: { kty: 'RSA', n: 'AQAB', e: 'AQAB' } }, JSON.stringify(claims))],
    ['an x5u header', resign({ ...header, x5u: 'https://attacker.example/cert' }, JSON.stringify(claims))],
    ['an nbf an hour ahead', resign(header, JSON.stringify({ ...claims, nbf: now + 3600 }))],
    ['an iat a year ahead', resign(header, JSON.stringify({ ...claims, iat: now + 366 * 86400 }))],
    ['an exp of 1e400, which JSON reads as Infinity', resign(header, JSON.stringify({ ...claims, exp: 0 }).replace('"exp":0', '"exp":1e400'))]
  ]
  for (const [name, value] of cases) {
    const res = await refresh(ctx.app, value)
    t.same([res.status, res.body.error], [400, 'invalid_grant'], name)
    const compat = await ctx.app.inject({ method: 'POST', url: '/api/token/refresh/', payload: { refresh: value } })
    t.same([compat.statusCode, compat.json().code], [401, 'token_not_valid'], `${name}, on SimpleJWT's refresh`)
  }
  t.equal((await refresh(ctx.app, token)).status, 200, 'the token as minted still refreshes: none of them spent it')
})

t.test('cleanup deletes only what expired', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_TTL: '100s', TESSERA_REFRESH_GRACE: '0' })
  const live = await user(ctx, 'judy')
  await user(ctx, 'judy') // a session left to expire
  const ended = await user(ctx, 'judy')
  await ctx.app.inject({ method: 'POST', url: '/v1/logout', headers: { authorization: `Bearer ${ended.access}` } })
  ctx.advance(60)
  const rotated = await refresh(ctx.app, live.refresh)
  t.equal(rotated.status, 200)
  ctx.advance(60)
  const result = await cleanupExpired(ctx.connection.db, { now: ctx.deps.clock(), revokedRetention: 30, auditRetention: 90 * 86400 })
  t.match(result, { ran: true, sessions: 2 })
  t.ok(result.refreshTokens >= 1, 'the used, expired token of the live session is gone')
  const sessions = await ctx.connection.db.selectFrom('sessions').select('id').execute()
  t.same(sessions.map((s) => s.id), [live.sid], 'only the live session remains')
  t.equal((await refresh(ctx.app, String(rotated.body.refresh_token))).status, 200, 'and it still works')
})

t.test('a token deleted while its refresh waits for its row (cleanup, a token at a time) is refused invalid_grant, not a 500', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_REFRESH_GRACE: '0' })
  const { refresh: token } = await user(ctx, 'kate')
  const jti = String(decodeJwt(token).jti)
  // The delete holds the token's row until it commits, as a cleanup batch's statement does.
  const deleting = await ctx.connection.pool.connect()
  t.teardown(() => { deleting.release() })
  await deleting.query('BEGIN')
  t.equal((await deleting.query('DELETE FROM refresh_tokens WHERE jti = $1', [jti])).rowCount, 1)
  const watcher = await ctx.connection.pool.connect()
  t.teardown(() => { watcher.release() })
  const refreshing = refresh(ctx.app, token)
  t.ok(await within(30_000, async () => await lockWaiters(watcher) >= 1) !== undefined, 'the refresh waits for the token\'s row')
  await deleting.query('COMMIT')
  const res = await refreshing
  t.same([res.status, res.body.error], [400, 'invalid_grant'], 'the row gone under it: refused, as any unknown token')
  t.equal((await ctx.connection.db.selectFrom('refresh_tokens').select('jti').execute()).length, 0, 'and no successor written')
})

t.test('a password change is dated when it commits, after its hashes: the sessions it ends are not ended before a refresh it raced', async (t) => {
  let advance = (_seconds: number): void => {}
  // Each hash takes 5 s of the test clock, as argon2 takes its time on a real one.
  class SlowHasher extends PasswordHasher {
    override async hash (password: string): Promise<string> {
      advance(5)
      return await super.hash(password)
    }
  }
  const ctx = await buildTestApp(t, {}, { hasher: new SlowHasher({ concurrency: 1, depth: 8 }) })
  advance = ctx.advance
  const asking = await user(ctx, 'ivy')
  await user(ctx, 'ivy')
  const started = ctx.deps.clock()
  const changed = await ctx.app.inject({ method: 'PUT', url: '/v1/password', headers: { authorization: `Bearer ${asking.access}` }, payload: { current_password: PASSWORD, new_password: 'a new password' } })
  t.same(changed.json(), { sessions_ended: 1 })
  const ended = await ctx.connection.db.selectFrom('sessions').select('revoked_at').where('revoke_reason', '=', 'password_change').executeTakeFirstOrThrow()
  const changedAt = (await ctx.connection.db.selectFrom('users').select('password_changed_at').where('username', '=', 'ivy').executeTakeFirstOrThrow()).password_changed_at
  t.equal(ended.revoked_at?.getTime(), started.getTime() + 5000, 'the other session ended when the change committed, after the new password\'s hash')
  t.equal(changedAt?.getTime(), ended.revoked_at?.getTime(), 'the password dated the same')
})

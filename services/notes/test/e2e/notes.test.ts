import { generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { sql } from 'kysely'
import { pino } from 'pino'
import { memorySink, silenceableRelay } from '@tessera/testkit'
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { buildApp, type App } from '../../src/app.js'
import { ConfigError, loadConfig, type Config } from '../../src/config.js'
import { connect, migrate } from '../../src/db.js'
import { createKeySource } from '../../src/keys.js'
import { createTestDatabase, forge, json, registerClient, startTessera, tesseraCli } from '../helpers.js'

const PASSWORD = 'correct horse battery'

t.test('config: defaults, derived JWKS URL, one-line errors', async (t) => {
  const config = loadConfig({ DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db' })
  t.equal(config.issuer, 'http://127.0.0.1:8080')
  t.equal(config.jwksUrl, 'http://127.0.0.1:8080/.well-known/jwks.json')
  t.equal(config.audience, 'urn:tessera:notes', 'notes is a resource of its own')
  t.equal(config.port, 8201)
  t.equal(loadConfig({ DATABASE_URL: 'postgres://x/y', NOTES_ISSUER: 'https://id.example/', NOTES_JWKS_URL: 'https://keys.example/jwks' }).jwksUrl, 'https://keys.example/jwks')
  t.throws(() => loadConfig({}), new ConfigError('DATABASE_URL is required'))
  t.throws(() => loadConfig({ DATABASE_URL: 'postgres://x/y', PORT: 'eighty' }), /PORT="eighty" is invalid/)
  t.throws(() => loadConfig({ DATABASE_URL: 'postgres://x/y', NOTES_ISSUER: 'not a url' }), /NOTES_ISSUER/)
})

t.test('notes against a real Tessera', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  // Short enough for the expiry test to wait out, long enough that a token got
  // before two more users' sign-ups and logins (four argon2 hashes, run at a
  // lowered priority: seconds on a loaded machine) has not expired when used.
  const kek = randomBytes(32).toString('base64url')
  const tessera = await startTessera(t, { DATABASE_URL: databaseUrl, TESSERA_ACCESS_TTL: '15s', TESSERA_KEK: kek })
  await registerClient(databaseUrl, ['notes-web', '--grants', 'password,refresh_token', '--scopes', 'notes:read notes:write', '--resources', 'urn:tessera:notes'])
  const reader = await registerClient(databaseUrl, ['reader', '--confidential', '--scopes', 'notes:read', '--resources', 'urn:tessera:notes'])
  const db = connect(databaseUrl)
  t.teardown(async () => { await db.destroy() })
  await migrate(db)
  await migrate(db) // idempotent: a restart, or a second instance, migrates nothing

  const logs = memorySink()
  const logger = pino({ level: 'info' }, logs.stream)
  const config: Config = {
    // Tessera's default issuer; its JWKS is wherever it listens.
    ...loadConfig({ DATABASE_URL: databaseUrl, NOTES_JWKS_URL: `${tessera.url}/.well-known/jwks.json` }),
    jwksTtlMs: 100,
    clockSkewMs: 0
  }
  const app: App = await buildApp(config, { db, logger, keys: createKeySource(config.jwksUrl, { cacheMaxAgeMs: config.jwksTtlMs, cooldownMs: config.jwksCooldownMs, clockSkewMs: config.clockSkewMs }) })
  t.teardown(async () => { await app.close() })

  async function tokensFor (username: string, ask: Record<string, string> = { client_id: 'notes-web', resource: 'urn:tessera:notes' }): Promise<{ access_token: string, refresh_token: string }> {
    await json(`${tessera.url}/v1/users`, { method: 'POST', body: JSON.stringify({ username, password: PASSWORD }) })
    const { status, body } = await json(`${tessera.url}/oauth/token`, { method: 'POST', body: JSON.stringify({ grant_type: 'password', username, password: PASSWORD, ...ask }) })
    if (status !== 200) throw new Error(`login failed: ${status}`)
    return body as { access_token: string, refresh_token: string }
  }
  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, token?: string, payload?: Record<string, unknown>): Promise<LightMyRequestResponse> =>
    await app.inject({ method, url, headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, ...(payload === undefined ? {} : { payload }) })
  const refused = (t: Test, res: { statusCode: number, headers: Record<string, unknown> }, what: string): void => {
    t.equal(res.statusCode, 401, what)
    t.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"', `${what}: WWW-Authenticate`)
  }
  type Test = typeof t

  t.test('each user creates, lists and deletes only their own notes', async (t) => {
    const alice = await tokensFor('alice')
    const bob = await tokensFor('bob')
    const created = await call('POST', '/notes', alice.access_token, { text: 'buy milk' })
    t.equal(created.statusCode, 201)
    const note = created.json()
    t.equal(note.text, 'buy milk')
    t.match(note.id, /^[0-9a-f-]{36}$/)
    t.same((await call('GET', '/notes', alice.access_token)).json().notes.map((n: { id: string }) => n.id), [note.id])
    t.same((await call('GET', '/notes', bob.access_token)).json().notes, [], 'bob sees none of alice\'s notes')
    t.equal((await call('DELETE', `/notes/${note.id}`, bob.access_token)).statusCode, 404, 'bob cannot delete it')
    t.equal((await call('DELETE', `/notes/${note.id}`, alice.access_token)).statusCode, 204)
    t.equal((await call('DELETE', `/notes/${note.id}`, alice.access_token)).statusCode, 404, 'already gone')
    t.equal((await call('DELETE', '/notes/not-a-uuid', alice.access_token)).statusCode, 400)
    const empty = await call('POST', '/notes', alice.access_token, { text: '' })
    t.equal(empty.statusCode, 400)
    t.equal(empty.headers['content-type'], 'application/problem+json; charset=utf-8')
    t.match(empty.json(), { type: 'about:blank', title: 'Bad Request', status: 400, request_id: /^[0-9a-f-]{36}$/ }, 'a problem body names its request, as Tessera\'s do')
    const logged = logs.lines().map((line) => JSON.parse(line) as { reqId?: string }).filter((line) => line.reqId === empty.json().request_id)
    t.ok(logged.length > 0, 'the request id finds the request in the log')
    t.equal((await call('POST', '/notes', alice.access_token, { text: 'x', owner: 'bob' })).statusCode, 400, 'no extra fields')
    const nul = await call('POST', '/notes', alice.access_token, { text: 'a\u0000b' })
    t.match({ status: nul.statusCode, body: nul.json() }, { status: 400, body: { title: 'Bad Request', detail: 'body/text must not contain a NUL character' } }, 'a NUL, which Postgres cannot store, is the client\'s mistake')
    const big = await call('POST', '/notes', alice.access_token, { text: 'x'.repeat(20_000) })
    t.match({ status: big.statusCode, body: big.json() }, { status: 413, body: { title: 'Content Too Large' } })
    const nowhere = await call('GET', '/nowhere')
    t.equal(nowhere.statusCode, 404)
    t.not(nowhere.json().request_id, empty.json().request_id, 'each request has its own id')
    t.equal((await call('GET', '/healthz')).statusCode, 200)
    t.match(nowhere.json(), { instance: '/nowhere' }, 'a problem names its path, as Tessera\'s do')
    const wrongMethod = await app.inject({ method: 'PUT', url: '/notes?x=1', headers: { authorization: `Bearer ${alice.access_token}` } })
    t.equal(wrongMethod.statusCode, 405, 'a method a path is not served with: 405, as Tessera answers')
    t.equal(wrongMethod.headers.allow, 'GET, HEAD, POST')
    t.match(wrongMethod.json(), { title: 'Method Not Allowed', detail: '/notes is served with GET, HEAD, POST, not PUT', instance: '/notes' }, 'the detail names the method refused, as Tessera\'s does')
    const getOne = await app.inject({ method: 'GET', url: `/notes/${note.id}` })
    t.equal(getOne.headers.allow, 'DELETE')
    t.equal(getOne.json().detail, `/notes/${note.id} is served with DELETE, not GET`)
    const plain = await app.inject({ method: 'POST', url: '/notes', headers: { authorization: `Bearer ${alice.access_token}`, 'content-type': 'text/plain' }, payload: 'buy milk' })
    t.equal(plain.statusCode, 415, 'a body that is not JSON: 415, not a schema\'s 400')
    t.match(plain.json(), { title: 'Unsupported Media Type', detail: 'send the body as application/json' })
  })

  t.test('scopes and audiences: notes:read lists, notes:write writes, other audiences are refused', async (t) => {
    const serviceToken = await json(`${tessera.url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`reader:${reader.client_secret ?? ''}`).toString('base64')}` },
      body: JSON.stringify({ grant_type: 'client_credentials', resource: 'urn:tessera:notes' })
    })
    t.equal(serviceToken.status, 200, 'a service token by client_credentials', { body: serviceToken.body })
    const token = serviceToken.body.access_token as string
    const listed = await call('GET', '/notes', token)
    t.equal(listed.statusCode, 200, 'a service with notes:read lists (its own, by sub = client_id)')
    t.same(listed.json().notes, [])
    const written = await call('POST', '/notes', token, { text: 'from a service' })
    t.equal(written.statusCode, 403, 'notes:write is needed to add')
    t.equal(written.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="notes:write"')
    t.equal(written.headers['content-type'], 'application/problem+json; charset=utf-8')
    const deleted = await call('DELETE', '/notes/00000000-0000-4000-8000-000000000000', token)
    t.equal(deleted.statusCode, 403, 'and to delete')

    const readOnly = await tokensFor('erin', { client_id: 'notes-web', resource: 'urn:tessera:notes', scope: 'notes:read' })
    t.equal((await call('GET', '/notes', readOnly.access_token)).statusCode, 200)
    t.equal((await call('POST', '/notes', readOnly.access_token, { text: 'no' })).statusCode, 403, 'a user token narrowed to notes:read cannot write')

    const apiToken = await tokensFor('frank', {})
    refused(t, await call('GET', '/notes', apiToken.access_token), 'a token for the default audience (api)')
  })

  t.test('its database out of reach: 503 with Retry-After, not a 500', async (t) => {
    const erin = await tokensFor('erin')
    // Nothing listens on port 1: what a stopped Postgres looks like over TCP.
    const downDb = connect('postgres://notes:x@127.0.0.1:1/notes')
    t.teardown(async () => { await downDb.destroy() })
    const down = await buildApp(config, { db: downDb, logger, keys: createKeySource(config.jwksUrl, { cacheMaxAgeMs: config.jwksTtlMs, cooldownMs: config.jwksCooldownMs, clockSkewMs: config.clockSkewMs }) })
    t.teardown(async () => { await down.close() })
    const res = await down.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${erin.access_token}` } })
    t.equal(res.statusCode, 503)
    t.equal(res.headers['retry-after'], '1')
    t.match(res.json(), { status: 503, title: 'Service Unavailable', detail: 'the database is out of reach; retry shortly' })
    const logged = logs.text().split('\n').filter((line) => line.includes('"database unavailable"')).map((line) => JSON.parse(line) as Record<string, unknown>)
    t.equal(logged.length, 1, 'one line for the request')
    t.same(logged[0]?.db_error, { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:1' }, 'which outage, in its code and message')
    t.notOk('err' in (logged[0] ?? {}), 'no stack: an outage logs one line per request')
  })

  /** An app over `appDb`, closed with `t`. */
  const appOver = async (t: Test, appDb: typeof db): Promise<App> => {
    const app = await buildApp(config, { db: appDb, logger, keys: createKeySource(config.jwksUrl, { cacheMaxAgeMs: config.jwksTtlMs, cooldownMs: config.jwksCooldownMs, clockSkewMs: config.clockSkewMs }) })
    t.teardown(async () => { await app.close() })
    return app
  }

  const hung = 'no answer in 10 s'
  /** GET /notes, or `hung` when no answer comes in 10 s: without a bound it waits on TCP, about 15 minutes. */
  const listWithin10s = async (app: App, token: string): Promise<LightMyRequestResponse | typeof hung> => await Promise.race([
    app.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${token}` } }),
    new Promise<typeof hung>((resolve) => setTimeout(() => { resolve(hung) }, 10_000).unref())
  ])
  const unavailable = (t: Test, res: LightMyRequestResponse | typeof hung, dbError: Record<string, unknown>, loggedBefore: number): void => {
    if (res === hung) {
      t.fail(hung)
      return
    }
    t.equal(res.statusCode, 503)
    t.equal(res.headers['retry-after'], '1')
    t.match(res.json(), { status: 503, title: 'Service Unavailable', detail: 'the database is out of reach; retry shortly' })
    const logged = logs.text().split('\n').filter((line) => line.includes('"database unavailable"')).slice(loggedBefore).map((line) => JSON.parse(line) as Record<string, unknown>)
    t.equal(logged.length, 1, 'one line for the request')
    t.match(logged[0]?.db_error, dbError, 'which outage')
  }
  const unavailableLogged = (): number => logs.text().split('\n').filter((line) => line.includes('"database unavailable"')).length

  t.test('a database that refuses it, or takes no writes: 503 with Retry-After, not a 500', async (t) => {
    const erin = await tokensFor('erin')
    const gone = new URL(databaseUrl)
    gone.pathname = '/no_such_database'
    const readOnly = new URL(databaseUrl)
    readOnly.searchParams.set('options', '-c default_transaction_read_only=on')
    const cases = [
      // What a dropped database, a rotated password or a pg_hba.conf refusal look like: Postgres refuses the new connection (3D000 here; 28P01, 28000 alike).
      { what: 'a database that does not exist', url: gone.href, method: 'GET' as const, code: '3D000' },
      // A hot standby after a failover, or a DBA's read-only for maintenance.
      { what: 'a read-only database', url: readOnly.href, method: 'POST' as const, code: '25006' }
    ]
    for (const { what, url, method, code } of cases) {
      const refusingDb = connect(url)
      t.teardown(async () => { await refusingDb.destroy() })
      const refusing = await appOver(t, refusingDb)
      const before = unavailableLogged()
      const res = await refusing.inject({ method, url: '/notes', headers: { authorization: `Bearer ${erin.access_token}` }, ...(method === 'POST' ? { payload: { text: 'kept?' } } : {}) })
      t.test(what, async (t) => { unavailable(t, res, { code }, before) })
    }
  })

  t.test('a statement past the statement timeout is cancelled: 503 with Retry-After, not a request held until the client gives up', async (t) => {
    const erin = await tokensFor('erin')
    const slowDb = connect(databaseUrl, 300)
    t.teardown(async () => { await slowDb.destroy() })
    const slow = await appOver(t, slowDb)
    const before = unavailableLogged()
    // The table locked by another connection: the list waits for it, as behind a long migration.
    const res = await db.transaction().execute(async (trx) => {
      await sql`LOCK TABLE notes.notes IN ACCESS EXCLUSIVE MODE`.execute(trx)
      return await listWithin10s(slow, erin.access_token)
    })
    unavailable(t, res, { code: '57014' }, before)
  })

  t.test('its database gone silent (connected, never answering: a failover, a partition, a frozen host): 503 soon after the statement timeout, and the next request gets a new connection', async (t) => {
    const erin = await tokensFor('erin')
    const relay = await silenceableRelay(t, new URL(databaseUrl))
    const silentDb = connect(relay.url, 300)
    t.teardown(async () => { await silentDb.destroy() })
    const app = await appOver(t, silentDb)
    const list = async (): Promise<LightMyRequestResponse> => await app.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${erin.access_token}` } })
    t.equal((await list()).statusCode, 200, 'answered through the relay')
    relay.silence()
    const before = unavailableLogged()
    const res = await listWithin10s(app, erin.access_token)
    unavailable(t, res, { code: 'ETIMEDOUT', message: 'the database did not answer within 2300 ms' }, before)
    t.equal((await list()).statusCode, 200, 'the silent connection was let go: the next request connects afresh, through to the server')
  })

  t.test('the JWKS out of reach from the start (nothing listens): 503 with Retry-After until the cooldown ends, never a 401', async (t) => {
    const erin = await tokensFor('erin')
    // Nothing listens on port 1.
    const blind = await buildApp(config, { db, logger, keys: createKeySource('http://127.0.0.1:1/.well-known/jwks.json', { cacheMaxAgeMs: config.jwksTtlMs, cooldownMs: 30_000, clockSkewMs: config.clockSkewMs }) })
    t.teardown(async () => { await blind.close() })
    const res = await blind.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${erin.access_token}` } })
    t.equal(res.statusCode, 503)
    t.equal(res.headers['retry-after'], '30', 'when the next fetch will be tried')
    t.match(res.json(), { status: 503, title: 'Service Unavailable' })
    const again = await blind.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${erin.access_token}` } })
    t.equal(again.statusCode, 503)
    t.ok(Number(again.headers['retry-after']) <= 30, 'counting down, from memory')
  })

  t.test('refuses refresh tokens, forged, unknown-kid and missing tokens with 401', async (t) => {
    const carol = await tokensFor('carol')
    refused(t, await call('GET', '/notes', carol.refresh_token), 'a refresh token')
    refused(t, await call('GET', '/notes'), 'no token')
    refused(t, await call('GET', '/notes', 'not.a.jwt'), 'garbage')
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const claims = JSON.parse(Buffer.from(carol.access_token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>
    const rs256 = (data: string): Buffer => sign('sha256', Buffer.from(data), privateKey)
    // Issued before the set is fetched (one issued since may be of a key newer than the set: a 503, tested below).
    refused(t, await call('GET', '/notes', forge({ alg: 'RS256', typ: 'at+jwt', kid: 'no-such-kid' }, { ...claims, iat: Number(claims.iat) - 10 }, rs256)), 'an unknown kid')
    const realKid = JSON.parse(Buffer.from(carol.access_token.split('.')[0] ?? '', 'base64url').toString()).kid as string
    refused(t, await call('GET', '/notes', forge({ alg: 'RS256', typ: 'at+jwt', kid: realKid }, { ...claims, sub: 'someone-else' }, rs256)), 'a known kid with a bad signature')
    refused(t, await call('GET', '/notes', forge({ alg: 'none', typ: 'at+jwt', kid: realKid }, claims, () => Buffer.alloc(0))), 'alg none')
    t.notMatch(logs.text(), carol.access_token, 'no token is logged')
  })

  t.test('typ: at+jwt or application/at+jwt in any case (RFC 9068 §4), nothing else', async (t) => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString()
    const local: App = await buildApp(config, { db, logger, keys: async (kid) => { if (kid !== 'local') throw new Error('unknown kid'); return pem } })
    t.teardown(async () => { await local.close() })
    const now = Math.floor(Date.now() / 1000)
    const claims = { iss: config.issuer, aud: config.audience, sub: randomUUID(), scope: 'notes:read', iat: now, exp: now + 60 }
    const rs256 = (data: string): Buffer => sign('sha256', Buffer.from(data), privateKey)
    const status = async (typ: string | undefined): Promise<number> => (await local.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${forge({ alg: 'RS256', kid: 'local', ...(typ === undefined ? {} : { typ }) }, claims, rs256)}` } })).statusCode
    for (const typ of ['at+jwt', 'AT+JWT', 'application/at+jwt', 'Application/AT+jwt']) t.equal(await status(typ), 200, `${typ}: accepted`)
    for (const typ of ['JWT', 'rt+jwt', 'application/jwt', 'at+jwt+x', undefined]) t.equal(await status(typ), 401, `${String(typ)}: refused`)
    const arrayTyp = forge({ alg: 'RS256', kid: 'local', typ: ['at+jwt'] }, claims, rs256)
    t.equal((await local.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${arrayTyp}` } })).statusCode, 401, 'a typ that is not a string, though its text reads at+jwt: refused')
  })

  t.test('iss, aud, exp, iat and sub are required: a token without one is refused, not let through unchecked', async (t) => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString()
    const local: App = await buildApp(config, { db, logger, keys: async () => pem })
    t.teardown(async () => { await local.close() })
    const now = Math.floor(Date.now() / 1000)
    const claims: Record<string, unknown> = { iss: config.issuer, aud: config.audience, sub: randomUUID(), scope: 'notes:read', iat: now, exp: now + 60 }
    const statusOfText = async (payload: string): Promise<number> => {
      const data = `${Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'at+jwt', kid: 'local' })).toString('base64url')}.${Buffer.from(payload).toString('base64url')}`
      const token = `${data}.${sign('sha256', Buffer.from(data), privateKey).toString('base64url')}`
      return (await local.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${token}` } })).statusCode
    }
    const status = async (payload: Record<string, unknown>): Promise<number> => await statusOfText(JSON.stringify(payload))
    t.equal(await status(claims), 200, 'all of them: accepted')
    for (const claim of ['iss', 'aud', 'exp', 'iat', 'sub']) {
      const { [claim]: _left, ...without } = claims
      t.equal(await status(without), 401, `without ${claim}: refused`)
    }
    t.equal(await status({ ...claims, iat: now + 120 }), 401, 'issued in the future, past the clock skew: refused')
    // JSON reads 1e400 as Infinity, which fast-jwt took as a date: an exp of it never expired.
    const withDate = async (claim: string, text: string): Promise<number> => await statusOfText(JSON.stringify({ ...claims, [claim]: 0 }).replace(`"${claim}":0`, `"${claim}":${text}`))
    t.equal(await withDate('nbf', String(now - 5)), 200, 'an nbf already reached: accepted')
    for (const [claim, text] of [['exp', '1e400'], ['iat', '-1e400'], ['nbf', '-1e400']] as const) {
      t.equal(await withDate(claim, text), 401, `an ${claim} of ${text}, which JSON reads as an infinity: refused`)
    }
    // The owner column is text: a sub that is not one was a 500 from Postgres (a NUL; a list, read as a record), or another owner's notes (7 and "7").
    for (const [what, sub] of [['holds a NUL', 'a\u0000b'], ['is a list', ['a', 'b']], ['is a number', 7], ['is an object', { id: 'a' }], ['is empty', '']] as const) {
      t.equal(await status({ ...claims, sub }), 401, `a sub that ${what}: refused`)
    }
  })

  t.test('a token in the query string is not written to the log with the URL', async (t) => {
    const frank = await tokensFor('frank')
    const res = await app.inject({ method: 'GET', url: `/notes?access_token=${frank.access_token}`, headers: { authorization: `Bearer ${frank.access_token}` } })
    t.equal(res.statusCode, 200)
    const line = logs.text().split('\n').filter((l) => l.includes('"msg":"request"')).at(-1) ?? ''
    t.match(line, /"method":"GET","path":"\/notes","status":200/, 'a request line, with the path alone')
    t.notMatch(logs.text(), frank.access_token.split('.')[2] ?? 'x', 'no part of the token is logged')
  })

  t.test('a token in the path (a client that put it where the id goes) is logged only up to it', async (t) => {
    const grace = await tokensFor('grace')
    const signature = grace.access_token.split('.')[2] ?? 'x'
    for (const path of [`/notes/${grace.access_token}`, `/notes/%65${grace.access_token.slice(1)}`, `/${grace.access_token}/x`]) {
      const res = await app.inject({ method: 'DELETE', url: path, headers: { authorization: `Bearer ${grace.access_token}` } })
      t.ok(res.statusCode >= 400 && res.statusCode < 500, `${path.slice(0, 12)}…: refused (${res.statusCode})`)
    }
    const lines = logs.text().split('\n').filter((l) => l.includes('"msg":"request"')).slice(-3).map((l) => (JSON.parse(l) as { path: string }).path)
    t.same(lines, ['/notes/[token]', '/notes/[token]', '/[token]'], 'each request line has the path up to the token')
    t.notMatch(logs.text(), signature, 'no part of the token is logged')
    await app.inject({ method: 'DELETE', url: `/notes/${randomUUID()}`, headers: { authorization: `Bearer ${grace.access_token}` } })
    t.match(logs.text().split('\n').filter((l) => l.includes('"msg":"request"')).at(-1), /"path":"\/notes\/[0-9a-f-]{36}"/, 'a path without one is logged as it came')
  })

  t.test('JWKS: misses remembered, refetches rate-limited, known keys trusted for a bounded time only; expired tokens fail', async (t) => {
    const dave = await tokensFor('dave')
    const published = await (await fetch(`${tessera.url}/.well-known/jwks.json`)).text()
    // A real HTTP JWKS in front of Tessera's, so the test can count fetches and take it down.
    let fetches = 0
    let reachable = true
    const relay = createServer((_req, res) => {
      fetches++
      if (reachable) res.writeHead(200, { 'content-type': 'application/json' }).end(published)
      else res.writeHead(503).end()
    })
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { relay.close() })
    const port = (relay.address() as AddressInfo).port
    const relayed = await buildApp(config, { db, logger, keys: createKeySource(`http://127.0.0.1:${port}/jwks.json`, { cacheMaxAgeMs: 3000, cooldownMs: 1000, clockSkewMs: config.clockSkewMs }) })
    t.teardown(async () => { await relayed.close() })
    const status = async (token: string): Promise<number> =>
      (await relayed.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${token}` } })).statusCode
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const claims = JSON.parse(Buffer.from(dave.access_token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>
    // Issued well before any set fetched here: a kid such a set lacks is never one that began signing since.
    const unknownKid = forge({ alg: 'RS256', typ: 'at+jwt', kid: 'not-published' }, { ...claims, iat: Number(claims.iat) - 10 }, (data) => sign('sha256', Buffer.from(data), privateKey))
    const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

    t.equal(await status(dave.access_token), 200, 'the set is fetched')
    t.equal(fetches, 1)
    for (let i = 0; i < 5; i++) {
      const missed = await relayed.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${unknownKid}` } })
      t.equal(missed.statusCode, 503, 'an unknown kid right after a fetch may be a key the issuer began signing with since: unavailable, not invalid')
      t.equal(missed.headers['retry-after'], '1', 'retry once the cooldown has passed')
    }
    t.equal(fetches, 1, 'a remembered miss: no refetch')
    await sleep(1100)
    t.equal(await status(unknownKid), 401, 'past the cooldown the set is fetched again, and a kid it still lacks is the token\'s fault')
    for (let i = 0; i < 4; i++) t.equal(await status(unknownKid), 401, 'and stays so until the next fetch: a set fetched after the token came lacks it')
    t.equal(fetches, 2, 'one refetch for the whole burst of misses')
    const otherKid = forge({ alg: 'RS256', typ: 'at+jwt', kid: 'another-unpublished' }, claims, (data) => sign('sha256', Buffer.from(data), privateKey))
    const newer = await relayed.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${otherKid}` } })
    t.equal(newer.statusCode, 503, 'a kid that fetch did not judge may still be newer than it')
    t.match(newer.json(), { detail: 'the access token\'s key is newer than the issuer\'s key set fetched moments ago; retry shortly' }, 'saying so, not that the keys cannot be fetched')

    // The set still fresh, the JWKS down: a kid it lacks is one failed fetch, then waits out the cooldown.
    reachable = false
    await sleep(1100)
    for (let i = 0; i < 5; i++) t.equal(await status(unknownKid), 503, 'a kid the fresh set lacks, once the JWKS cannot be fetched: unavailable, not invalid')
    t.equal(fetches, 3, 'one fetch for the burst, not one per request (jose\'s own cooldown starts only at a successful fetch)')
    t.equal(await status(dave.access_token), 200, 'meanwhile the fresh set\'s keys still verify')
    t.equal(fetches, 3)

    await sleep(3100)
    const unchecked = await relayed.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${dave.access_token}` } })
    t.equal(unchecked.statusCode, 503, 'once the set is older than its max age and cannot be fetched, even a known key does not verify: 503, not a 401 that would tell the client to throw its token away')
    t.equal(unchecked.headers['retry-after'], '1', 'retry once the cooldown has passed')
    t.match(unchecked.json(), { type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the issuer\'s signing keys cannot be fetched to check the access token; retry shortly', request_id: /^[0-9a-f-]{36}$/ })
    t.equal(unchecked.headers['www-authenticate'], undefined, 'no invalid_token challenge')
    t.equal(fetches, 4)
    for (let i = 0; i < 5; i++) t.equal(await status(dave.access_token), 503)
    t.equal(fetches, 4, 'a failed fetch is not retried within the cooldown')
    t.equal(await status(unknownKid), 503, 'nor can an unknown kid be told apart from a key published meanwhile')

    reachable = true
    await sleep(1100)
    const erin = await tokensFor('erin')
    t.equal(await status(erin.access_token), 200, 'verifying again once the JWKS answers')
    t.equal(fetches, 5)
    const exp = (JSON.parse(Buffer.from(erin.access_token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number }).exp
    await sleep(Math.max(0, exp * 1000 - Date.now() + 1100))
    refused(t, await call('GET', '/notes', erin.access_token), 'the same token once expired')
  })

  t.test('a key that began signing after the JWKS copy a fetch got (a gateway\'s cache, moments after keys rotate --now): 503, not 401', async (t) => {
    // What the shipped gateway serves for up to 2 s after a key change: the set as it was before it.
    const before = await (await fetch(`${tessera.url}/.well-known/jwks.json`)).text()
    const gateway = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end(before) })
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { gateway.close() })
    const behind = await buildApp(config, { db, logger, keys: createKeySource(`http://127.0.0.1:${(gateway.address() as AddressInfo).port}/jwks.json`, { cacheMaxAgeMs: 60_000, cooldownMs: 1000, clockSkewMs: config.clockSkewMs }) })
    t.teardown(async () => { await behind.close() })
    const status = async (token: string): Promise<{ statusCode: number, headers: Record<string, unknown> }> =>
      await behind.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${token}` } })

    t.equal((await status((await tokensFor('gina')).access_token)).statusCode, 200, 'the set is fetched, past its cooldown by the next request')
    const { promoted } = await tesseraCli({ DATABASE_URL: databaseUrl, TESSERA_KEK: kek }, ['keys', 'rotate', '--now'])
    // Tessera signs with it once it has heard (NOTIFY): its own JWKS then lists it.
    for (let i = 0; i < 100 && !(await (await fetch(`${tessera.url}/.well-known/jwks.json`)).text()).includes(String(promoted)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const fresh = (await tokensFor('gina')).access_token
    const kid = (JSON.parse(Buffer.from(fresh.split('.')[0] ?? '', 'base64url').toString()) as { kid: string }).kid
    t.notOk(before.includes(kid), 'the token is signed with the new key, which the gateway\'s copy lacks')
    const first = await status(fresh)
    t.equal(first.statusCode, 503, 'the set fetched for this token may predate its key: a 401 would make the client drop a valid token and log its user out')
    t.ok(Number(first.headers['retry-after']) >= 1, 'with Retry-After')
    t.equal((await status(fresh)).statusCode, 503, 'and within the cooldown, still not judged')

    // A kid the set lacks on a token issued well before the fetch: that key was withdrawn or never ours.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const claims = JSON.parse(Buffer.from(fresh.split('.')[1] ?? '', 'base64url').toString()) as { iat: number }
    const old = forge({ alg: 'RS256', typ: 'at+jwt', kid: 'withdrawn' }, { ...claims, iat: claims.iat - 10 }, (data) => sign('sha256', Buffer.from(data), privateKey))
    await new Promise((resolve) => setTimeout(resolve, 1100))
    refused(t, await status(old), 'a token issued before the fetched set, whose kid it lacks')
  })
})

t.test('a pooled connection that loses its server while checked out fails its work, not the process', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const db = connect(databaseUrl)
  const other = connect(databaseUrl)
  t.teardown(async () => { await db.destroy(); await other.destroy() })
  await db.connection().execute(async (held) => {
    const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(held)
    await sql`SELECT pg_terminate_backend(${rows[0]?.pid ?? 0})`.execute(other)
    await new Promise((resolve) => setTimeout(resolve, 300))
    await t.rejects(sql`SELECT 1`.execute(held), 'the dead connection refuses work')
  })
  t.same((await sql<{ one: number }>`SELECT 1 AS one`.execute(db)).rows, [{ one: 1 }], 'the pool carries on with a new connection')
})

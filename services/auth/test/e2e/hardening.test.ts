import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { calculateJwkThumbprint } from 'jose'
import t from 'tap'
import { PasswordHasher } from '../../src/passwords/hasher.js'
import { buildTestApp, CountingHasher, login, signUp, testConfig } from '../helpers/app.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { jwksKids } from '../helpers/http.js'
import { runCli, startServer } from '../helpers/server.js'

const PASSWORD = 'correct horse battery'
const NEW_PASSWORD = 'battery staple horse'

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

t.test('PUT /v1/password: wrong current passwords count toward the account back-off, which then refuses without hashing', async (t) => {
  const config = testConfig()
  const hasher = new CountingHasher({ concurrency: config.hashConcurrency, depth: config.hashQueueDepth })
  const { app, deps } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '3', TESSERA_LOGIN_BACKOFF_BASE: '60s' }, { hasher })
  await signUp(app, 'pat', PASSWORD)
  const tokens = await login(app, 'pat', PASSWORD)
  const change = async (current: string): Promise<{ status: number, body: Record<string, unknown>, headers: Record<string, unknown> }> => {
    const res = await app.inject({ method: 'PUT', url: '/v1/password', headers: bearer(tokens.access_token), payload: { current_password: current, new_password: NEW_PASSWORD } })
    return { status: res.statusCode, body: res.json(), headers: res.headers }
  }
  for (let i = 0; i < 3; i++) t.equal((await change(`guess number ${i}`)).status, 403, `guess ${i + 1} is refused as incorrect`)
  const row = await deps.db.selectFrom('login_throttle').selectAll().where('username', '=', 'pat').executeTakeFirstOrThrow()
  t.equal(row.failures, 3, 'the guesses are counted under the account name, as logins are')

  const before = hasher.verifies
  const right = await change(PASSWORD)
  t.equal(right.status, 429, 'even the right current password is refused while backed off')
  t.match(right.headers['content-type'], /application\/problem\+json/)
  const wait = Number(right.headers['retry-after'])
  t.ok(wait > 50 && wait <= 60, `Retry-After ${wait} s`)
  t.equal(hasher.verifies, before, 'no argon2 verify while backed off')
  const loginNow = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'pat', password: PASSWORD } })
  t.equal(loginNow.statusCode, 429, 'the same back-off holds for the password grant')
  const audit = await deps.db.selectFrom('audit_events').select('type').where('type', '=', 'password.change_failed').execute()
  t.equal(audit.length, 3, 'each wrong guess is audited')
})

t.test('PUT /v1/password: a success clears the streak; the route is under the per-IP limit and sheds when hashing is full', async (t) => {
  const hasher = new PasswordHasher({ concurrency: 1, depth: 0 })
  const { app, deps } = await buildTestApp(t, { TESSERA_RATE_LIMIT: '6' }, { hasher })
  await signUp(app, 'quinn', PASSWORD)
  const tokens = await login(app, 'quinn', PASSWORD)
  const change = async (current: string, next: string): Promise<number> =>
    (await app.inject({ method: 'PUT', url: '/v1/password', headers: bearer(tokens.access_token), payload: { current_password: current, new_password: next } })).statusCode
  t.equal(await change('not the password', NEW_PASSWORD), 403)
  t.equal(await change(PASSWORD, NEW_PASSWORD), 200)
  t.equal(await deps.db.selectFrom('login_throttle').select('username').where('username', '=', 'quinn').executeTakeFirst(), undefined, 'a success resets the counter')

  const busy = hasher.hash('keeps the only hashing slot busy')
  t.equal(await change(NEW_PASSWORD, PASSWORD), 503, 'shed like the password grant when the hashing queue is full')
  await busy
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push(await change('wrong guess', PASSWORD))
  t.equal(statuses.at(-1), 429, `the per-IP limit of 6 a minute (shared with sign-up and the token route) answers 429: ${statuses.join(',')}`)
})

t.test('every Bearer route refuses a token whose session has ended', async (t) => {
  const { app } = await buildTestApp(t)
  await signUp(app, 'robin', PASSWORD)
  const stolen = await login(app, 'robin', PASSWORD)
  const other = await login(app, 'robin', PASSWORD)
  const out = await app.inject({ method: 'POST', url: '/v1/logout', headers: bearer(stolen.access_token), payload: {} })
  t.equal(out.statusCode, 200)
  const otherId = (JSON.parse(Buffer.from(other.access_token.split('.')[1] ?? '', 'base64url').toString()) as { sid: string }).sid
  const attempts = [
    { method: 'GET', url: '/v1/me' },
    { method: 'GET', url: '/v1/sessions' },
    { method: 'DELETE', url: `/v1/sessions/${otherId}` },
    { method: 'POST', url: '/v1/logout', payload: { all: true } },
    { method: 'PUT', url: '/v1/password', payload: { current_password: PASSWORD, new_password: NEW_PASSWORD } }
  ] as const
  for (const attempt of attempts) {
    const res = await app.inject({ ...attempt, headers: bearer(stolen.access_token) })
    t.equal(res.statusCode, 401, `${attempt.method} ${attempt.url} is refused`)
    t.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"')
  }
  const still = await app.inject({ method: 'GET', url: '/v1/sessions', headers: bearer(other.access_token) })
  t.equal(still.statusCode, 200, 'the live session still works')
  t.equal(still.json().sessions.length, 1, 'and nothing was ended through the stolen token')
})

t.test('a Bearer route without a valid token is refused 401 before its body or path is looked at', async (t) => {
  const { app } = await buildTestApp(t)
  const malformed = [
    { method: 'PUT', url: '/v1/password', payload: {} },
    { method: 'POST', url: '/v1/logout', payload: { all: 'yes' } },
    { method: 'DELETE', url: '/v1/sessions/not-a-uuid' },
    { method: 'GET', url: '/v1/me' }
  ] as const
  for (const request of malformed) {
    for (const [how, headers] of [['no token', {}], ['a token that is not ours', bearer('eyJhbGciOiJub25lIn0.e30.x')]] as const) {
      const res = await app.inject({ ...request, headers })
      t.equal(res.statusCode, 401, `${request.method} ${request.url}, ${how}: 401, not the body's or path's 400`)
      t.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"')
      t.notMatch(res.body, /current_password|all: must|must match format/, 'nothing of the route\'s schema told')
    }
  }
})

t.test('a NUL in a username is a clean 400, on sign-up and on login', async (t) => {
  const { app } = await buildTestApp(t)
  const signup = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'nul\u0000name', password: PASSWORD } })
  t.equal(signup.statusCode, 400)
  t.equal(signup.json().title, 'Bad Request')
  const token = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'nul\u0000name', password: PASSWORD } })
  t.equal(token.statusCode, 400)
  t.equal(token.json().error, 'invalid_request')
  const form = await app.inject({ method: 'POST', url: '/oauth/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'grant_type=password&username=a%00b&password=whatever1' })
  t.equal(form.statusCode, 400, 'form-encoded too')
})

t.test('router errors answer in the contract shape without echoing the path', async (t) => {
  const { app } = await buildTestApp(t)
  const long = 'x'.repeat(300)
  const tooLong = await app.inject({ method: 'DELETE', url: `/v1/sessions/${long}` })
  t.equal(tooLong.statusCode, 414)
  t.match(tooLong.headers['content-type'], /application\/problem\+json/)
  t.match(tooLong.json(), { type: 'about:blank', title: 'URI Too Long', status: 414 })
  t.notOk(tooLong.body.includes(long), 'the path is not echoed')
  const badUrl = await app.inject({ method: 'DELETE', url: '/v1/sessions/%E0%A4%A-secret' })
  t.equal(badUrl.statusCode, 400)
  t.match(badUrl.headers['content-type'], /application\/problem\+json/)
  t.notOk(badUrl.body.includes('secret'), 'the path is not echoed')
})

t.test('personal answers are not cacheable', async (t) => {
  const { app } = await buildTestApp(t)
  const created = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'sasha', password: PASSWORD } })
  t.equal(created.statusCode, 201)
  t.equal(created.headers['cache-control'], 'no-store', 'the sign-up answer')
  const tokens = await login(app, 'sasha', PASSWORD)
  for (const url of ['/v1/me', '/v1/sessions']) {
    const res = await app.inject({ method: 'GET', url, headers: bearer(tokens.access_token) })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['cache-control'], 'no-store', url)
  }
})

t.test('X-Request-Id is believed from the trusted proxy only', async (t) => {
  const direct = await buildTestApp(t)
  const forged = await direct.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'forged-by-client' } })
  t.not(forged.headers['x-request-id'], 'forged-by-client', 'with no trusted proxy, Tessera makes its own')
  t.match(forged.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  const untrusted = await buildTestApp(t, { TESSERA_TRUST_PROXY: '10.9.8.7' })
  t.match((await untrusted.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'forged-by-client' } })).headers['x-request-id'], /^[0-9a-f-]{36}$/, 'nor from a peer that is not the proxy: Tessera makes its own')
  const proxied = await buildTestApp(t, { TESSERA_TRUST_PROXY: '127.0.0.1' })
  t.equal((await proxied.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'from-the-gateway' } })).headers['x-request-id'], 'from-the-gateway', 'the gateway\'s id is kept')
})

t.test('a signing_keys row that does not hold together is neither published nor used, and is logged at error level', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const jwkOf = async (): Promise<{ n: string, e: string, thumbprint: string }> => {
    const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' })
    const n = jwk.n ?? ''
    const e = jwk.e ?? ''
    return { n, e, thumbprint: await calculateJwkThumbprint({ kty: 'RSA', n, e }, 'sha256') }
  }
  const forged = await jwkOf()
  const contradictory = await jwkOf()
  const overfull = await jwkOf()
  await db.insertInto('signing_keys').values([
    // A sound key whose row holds more than a public key: a prime factors n.
    { kid: overfull.thumbprint, state: 'previous', bits: 2048, public_jwk: JSON.stringify({ kty: 'RSA', n: overfull.n, e: overfull.e, kid: overfull.thumbprint, alg: 'RS256', use: 'sig', p: 'a-prime', q: 'another', x5c: ['not ours'] }) },
    { kid: 'forged-kid', state: 'previous', bits: 2048, public_jwk: JSON.stringify({ kty: 'RSA', n: forged.n, e: forged.e, kid: 'forged-kid', alg: 'RS256', use: 'sig' }) },
    { kid: contradictory.thumbprint, state: 'previous', bits: 2048, unpublished_at: new Date(), public_jwk: JSON.stringify({ kty: 'RSA', n: contradictory.n, e: contradictory.e, kid: contradictory.thumbprint, alg: 'RS256', use: 'sig' }) }
  ]).execute()
  const server = await startServer(t, { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') })
  const kids = await jwksKids(server.url)
  t.equal(kids.length, 2, 'only the key Tessera made and the sound row are published')
  t.ok(kids.includes(overfull.thumbprint))
  t.notOk(kids.includes('forged-kid') || kids.includes(contradictory.thumbprint))
  const { keys } = await (await fetch(`${server.url}/.well-known/jwks.json`)).json() as { keys: Array<Record<string, unknown>> }
  for (const key of keys) t.same(Object.keys(key), ['e', 'n', 'alg', 'kid', 'kty', 'use'], `${String(key.kid)}: the six public members alone, in the order (jsonb's) earlier versions published, so the ETag does not change`)
  const errors = server.output().split('\n').filter((line) => line.includes('"level":50'))
  t.ok(errors.some((line) => line.includes('forged-kid') && line.includes('thumbprint')), 'the forged kid is logged at error level')
  t.ok(errors.some((line) => line.includes(contradictory.thumbprint) && line.includes('unpublished_at')), 'so is the contradictory state')

  // keys list, which reads the same rows, marks the two the instances leave out, and only those.
  const env = { DATABASE_URL: url }
  const listed = await runCli(['keys', 'list', '--json'], env)
  t.equal(listed.code, 0, listed.stderr)
  const rejected = Object.fromEntries((JSON.parse(listed.stdout) as Array<{ kid: string, rejected: string | null }>).map((k) => [k.kid, k.rejected]))
  t.same(Object.values(rejected).filter((reason) => reason === null).length, 2, 'the key Tessera made and the sound row are not marked')
  t.same([rejected['forged-kid'], rejected[contradictory.thumbprint]], ['kid is not the RFC 7638 thumbprint of its public key', 'state previous but unpublished_at is set'], '--json says why the others are left out')
  const table = await runCli(['keys', 'list'], env)
  t.equal(table.code, 0, table.stderr)
  const lines = table.stdout.trimEnd().split('\n')
  t.match(lines.find((line) => line.startsWith('forged-kid ')), /^forged-kid +previous \(rejected\) /, 'the table marks the row in its state')
  t.notMatch(lines.find((line) => line.startsWith(overfull.thumbprint)), /rejected/, 'and not a sound one')
  t.same(lines.filter((line) => line.startsWith('rejected ')).sort(), [
    `rejected ${contradictory.thumbprint}: state previous but unpublished_at is set; no instance publishes or uses it (see who wrote the row)`,
    'rejected forged-kid: kid is not the RFC 7638 thumbprint of its public key; no instance publishes or uses it (see who wrote the row)'
  ].sort(), 'and says why under it')
})

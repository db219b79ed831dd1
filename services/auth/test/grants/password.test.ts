import t from 'tap'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { buildTestApp, CountingHasher, login, signUp, testConfig } from '../helpers/app.js'
import { PasswordHasher } from '../../src/passwords/hasher.js'
import { createClient } from '../../src/clients/register.js'

const PASSWORD = 'correct horse battery'

t.test('sign-up then login with a form body and with JSON', async (t) => {
  const { app, config, deps } = await buildTestApp(t)
  const created = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'Alice', password: PASSWORD } })
  t.equal(created.statusCode, 201)
  const user = created.json()
  t.equal(user.username, 'alice', 'usernames are lower-cased')
  t.match(user.id, /^[0-9a-f-]{36}$/)

  const form = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=password&username=ALICE&password=${encodeURIComponent(PASSWORD)}`
  })
  t.equal(form.statusCode, 200)
  t.equal(form.headers['cache-control'], 'no-store')
  t.equal(form.headers.pragma, 'no-cache')
  const body = form.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_expires_in', 'refresh_token', 'scope', 'token_type'])
  t.equal(body.token_type, 'Bearer')
  t.equal(body.expires_in, 300)
  t.equal(body.refresh_expires_in, 30 * 86400)
  t.equal(body.scope, 'read write')

  const header = decodeProtectedHeader(body.access_token)
  t.same(header, { alg: 'RS256', kid: header.kid, typ: 'at+jwt' })
  const claims = decodeJwt(body.access_token)
  t.same(Object.keys(claims).sort(), ['aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'scope', 'sid', 'sub'])
  t.equal(claims.iss, config.issuer)
  t.equal(claims.sub, user.id)
  t.equal(claims.aud, 'api')
  t.equal(claims.client_id, 'tessera')
  t.equal((claims.exp ?? 0) - (claims.iat ?? 0), 300)

  const rt = decodeJwt(body.refresh_token)
  t.same(decodeProtectedHeader(body.refresh_token), { alg: 'RS256', kid: header.kid, typ: 'rt+jwt' })
  t.same(Object.keys(rt).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub'], 'no client_id or scope: nothing a verifier of access tokens reads')
  t.equal(rt.iss, config.issuer)
  t.equal(rt.sub, user.id)
  t.equal(rt.aud, config.issuer, 'refresh tokens are for the issuer only')
  t.equal(rt.sid, claims.sid)
  t.not(rt.jti, claims.jti)
  t.equal((rt.exp ?? 0) - (rt.iat ?? 0), 30 * 86400, 'thirty days by default')

  await createClient(deps.db, { clientId: 'web-app', confidential: false, grants: ['password'], scopes: ['read', 'write'], resources: [] }, new Date(), { actor: 'test' })
  const json = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'read', client_id: 'web-app' } })
  t.equal(json.statusCode, 200)
  t.equal(json.json().scope, 'read')
  t.equal(decodeJwt(json.json().access_token).client_id, 'web-app')

  const me = await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${json.json().access_token}` } })
  t.equal(me.statusCode, 200)
  t.equal(me.json().username, 'alice')
  t.equal(me.json().scope, 'read')
})

t.test('a client not registered for refresh_token gets the access token alone, and a session that ends with it', async (t) => {
  const { app, deps } = await buildTestApp(t)
  await signUp(app, 'amir', PASSWORD)
  await createClient(deps.db, { clientId: 'password-only', confidential: false, grants: ['password'], scopes: ['read'], resources: [] }, new Date(), { actor: 'test' })
  const login = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'amir', password: PASSWORD, client_id: 'password-only' } })
  t.equal(login.statusCode, 200)
  const body = login.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'scope', 'token_type'], 'no refresh_token it could never use (RFC 6749 §5.1: optional)')
  const claims = decodeJwt(body.access_token)
  const session = await deps.db.selectFrom('sessions').select(['expires_at']).where('id', '=', String(claims.sid)).executeTakeFirstOrThrow()
  t.equal(session.expires_at.getTime() / 1000, claims.exp, 'the session ends with its one access token, not 30 days later')
  const sessions = await app.inject({ method: 'GET', url: '/v1/sessions', headers: { authorization: `Bearer ${body.access_token}` } })
  t.equal(sessions.json().sessions.length, 1, 'and is listed while it lives')

  await createClient(deps.db, { clientId: 'both-grants', confidential: false, grants: ['password', 'refresh_token'], scopes: ['read'], resources: [] }, new Date(), { actor: 'test' })
  const pair = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'amir', password: PASSWORD, client_id: 'both-grants' } })
  t.ok(typeof pair.json().refresh_token === 'string' && pair.json().refresh_expires_in > 300, 'a client with refresh_token still gets its pair')
})

t.test('sign-up rules: taken names, closed sign-up, the policy', async (t) => {
  const { app } = await buildTestApp(t)
  await signUp(app, 'bob', PASSWORD)
  const taken = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'BOB', password: PASSWORD } })
  t.equal(taken.statusCode, 409)
  t.equal(taken.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.match(taken.json(), { status: 409, title: 'Conflict', detail: 'username: is already taken' })

  for (const [payload, field] of [
    [{ username: 'ab', password: PASSWORD }, 'username'],
    [{ username: 'white space', password: PASSWORD }, 'username'],
    [{ username: 'carol', password: 'short' }, 'password'],
    [{ username: 'carol', password: 'x'.repeat(257) }, 'password'],
    [{ username: 'carol', password: PASSWORD, admin: true }, 'admin'],
    [{ username: 'carol', password: 12345678 }, 'password'],
    [{ username: 'carol' }, 'password']
  ] as const) {
    const res = await app.inject({ method: 'POST', url: '/v1/users', payload })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.match(res.json().detail, new RegExp(`^${field}:`), `${JSON.stringify(payload)} names ${field}`)
  }
  const nfkc = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'ｄａｖｅ', password: PASSWORD } })
  t.equal(nfkc.json().username, 'dave', 'full-width letters normalise (NFKC)')

  const closed = await buildTestApp(t, { TESSERA_SIGNUP: 'closed' })
  const refused = await closed.app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'erin', password: PASSWORD } })
  t.equal(refused.statusCode, 403)
})

t.test('the policy counts code points after NFKC, at its bounds, and login applies the same normalisation', async (t) => {
  const { app } = await buildTestApp(t)
  // An emoji is one code point but two UTF-16 units: counting units would refuse 256 of them.
  const emoji = '\u{1F600}'
  const signUpStatus = async (username: string, password: string): Promise<number> =>
    (await app.inject({ method: 'POST', url: '/v1/users', payload: { username, password } })).statusCode
  const cases: Array<[string, string, number, string]> = [
    ['astral-max', emoji.repeat(256), 201, '256 code points (512 UTF-16 units)'],
    ['astral-over', emoji.repeat(257), 400, '257 code points'],
    ['astral-min', emoji.repeat(8), 201, '8 code points (16 UTF-16 units)'],
    ['astral-under', emoji.repeat(7), 400, '7 code points (14 UTF-16 units)'],
    // U+FB00 (ﬀ) is one code point that NFKC makes two: 4 of them are 8 once normalised.
    ['ligature', '\uFB00'.repeat(4), 201, '4 code points that NFKC makes 8'],
    ['a'.repeat(64), PASSWORD, 201, 'a 64-character username'],
    ['b'.repeat(65), PASSWORD, 400, 'a 65-character username']
  ]
  for (const [username, password, status, what] of cases) t.equal(await signUpStatus(username, password), status, what)

  const ok = async (username: string, password: string): Promise<number> =>
    (await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username, password } })).statusCode
  t.equal(await ok('astral-max', emoji.repeat(256)), 200, 'the 256-code-point password logs in')
  t.equal(await ok('LIGATURE', 'ff'.repeat(4)), 200, 'the NFKC form of the password signed up with logs in, under an upper-cased name')
  t.equal(await ok('ligature', '\uFB00'.repeat(4)), 200, 'so does the text signed up with: login normalises it alike')
  t.equal(await ok('ＡＳＴＲＡＬ-ＭＩＮ', emoji.repeat(8)), 200, 'a full-width name logs in as its NFKC, lower-cased form')
})

t.test('wrong password, unknown user and disabled user look the same', async (t) => {
  // Back-off would answer the repeated failures below without hashing; this test is about the hash.
  const config = testConfig()
  const hasher = new CountingHasher({ concurrency: config.hashConcurrency, depth: config.hashQueueDepth })
  const { app, connection } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '1000' }, { hasher })
  await signUp(app, 'frank', PASSWORD)
  await signUp(app, 'grace', PASSWORD)
  await connection.db.updateTable('users').set({ disabled_at: new Date() }).where('username', '=', 'grace').execute()
  const attempt = async (username: string, password: string): Promise<{ status: number, body: string, ms: number }> => {
    const started = process.hrtime.bigint()
    const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username, password } })
    return { status: res.statusCode, body: res.body, ms: Number(process.hrtime.bigint() - started) / 1e6 }
  }
  const wrong = await attempt('frank', 'not the password')
  const unknown = await attempt('nobody', 'not the password')
  const disabled = await attempt('grace', PASSWORD)
  t.equal(wrong.status, 400)
  t.same(JSON.parse(wrong.body), { error: 'invalid_grant', error_description: 'the username or password is incorrect' })
  t.equal(unknown.status, wrong.status)
  t.equal(unknown.body, wrong.body)
  t.equal(disabled.status, wrong.status)
  t.equal(disabled.body, wrong.body)

  // The same work, so the same time: each answer costs exactly one argon2
  // verify at the same parameters (the unknown user's against a dummy hash).
  // Counted rather than timed, so a busy machine cannot fail it; the times
  // are reported for reading.
  const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
  const argon2Head = (hash: string): string => hash.split('$').slice(0, 4).join('$')
  const times: Record<string, number[]> = { unknown: [], wrong: [], disabled: [] }
  for (let i = 0; i < 5; i++) {
    for (const [kind, username, password] of [['unknown', `nobody${i}`, 'not the password'], ['wrong', 'frank', 'not the password'], ['disabled', 'grace', PASSWORD]] as const) {
      const verified = hasher.verified.length
      const answer = await attempt(username, password)
      t.equal(answer.status, 400)
      t.same(hasher.verified.slice(verified).map(argon2Head), [argon2Head(hasher.verified[0] ?? '')], `${kind}: one verify at the same argon2 parameters`)
      times[kind]?.push(answer.ms)
    }
  }
  t.match(hasher.verified[0], /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/, 'an argon2id hash, with its parameters in its head')
  t.comment(`median ms: ${Object.entries(times).map(([kind, ms]) => `${kind} ${median(ms).toFixed(1)}`).join(', ')}`)
})

t.test('OAuth error shapes for bad requests', async (t) => {
  const { app } = await buildTestApp(t)
  await signUp(app, 'heidi', PASSWORD)
  const post = async (payload: string | object, contentType?: string): Promise<{ status: number, body: Record<string, string> }> => {
    const res = await app.inject({ method: 'POST', url: '/oauth/token', payload, headers: contentType === undefined ? {} : { 'content-type': contentType } })
    const body: Record<string, string> = res.json()
    // RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E, so no quote, backslash or non-ASCII character.
    if (body.error_description !== undefined) t.match(body.error_description, /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/, `error_description in RFC 6749's character set: ${body.error_description}`)
    return { status: res.statusCode, body }
  }
  t.match(await post({ grant_type: 'password', username: 'heidi' }), { status: 400, body: { error: 'invalid_request', error_description: /password/ } })
  t.match(await post({ username: 'heidi', password: PASSWORD }), { status: 400, body: { error: 'invalid_request', error_description: /grant_type/ } })
  t.match(await post({ grant_type: 'client_credentials' }), { status: 400, body: { error: 'unauthorized_client' } }, 'the default public client is not registered for client_credentials')
  t.match(await post({ grant_type: 'implicit' }), { status: 400, body: { error: 'unsupported_grant_type' } })
  t.match(await post('grant_type=password&username=heidi&username=eve&password=x', 'application/x-www-form-urlencoded'),
    { status: 400, body: { error: 'invalid_request', error_description: /username/ } }, 'a repeated parameter is refused')
  t.match(await post('{"grant_type":', 'application/json'), { status: 400, body: { error: 'invalid_request', error_description: /JSON/ } })
  t.match(await post('grant_type=password', 'text/plain'), { status: 400, body: { error: 'invalid_request', error_description: /content type/ } })
  t.match(await post({ grant_type: 'password', username: 'heidi', password: 12345678 }), { status: 400, body: { error: 'invalid_request', error_description: /password/ } })
  t.match(await post({ grant_type: 'password', username: 'heidi', password: PASSWORD, unknown_param: 'x' }), { status: 200 }, 'unknown parameters are ignored (RFC 6749 §3.2)')
  t.match(await post({ grant_type: 'password', username: 'heidi', password: PASSWORD, scope: 'admin' }), { status: 400, body: { error: 'invalid_scope' } })
  for (const scope of ['read\twrite', 'read\t', '\tread', 'read\nwrite', 'read "write"', 'read\\', 'réad']) {
    t.match(await post({ grant_type: 'password', username: 'heidi', password: PASSWORD, scope }), { status: 400, body: { error: 'invalid_scope', error_description: /RFC 6749 section 3\.3/ } },
      `a scope with a character outside scope-token is malformed: ${JSON.stringify(scope)}`)
  }
  t.match(await post({ grant_type: 'password', username: 'heidi', password: PASSWORD, scope: '  read   write ' }), { status: 200, body: { scope: 'read write' } }, 'runs of spaces are forgiven')
  t.match(await post({ grant_type: 'password', username: 'heidi', password: PASSWORD, client_id: 'bad id!' }), { status: 400, body: { error: 'invalid_request', error_description: /client_id/ } })
  const big = await post(`grant_type=password&username=heidi&password=${'x'.repeat(1024 * 1024)}`, 'application/x-www-form-urlencoded')
  t.equal(big.status, 413)
  t.equal(big.body.error, 'invalid_request')
})

t.test('the hashing queue sheds past its depth and the JWKS answers meanwhile', async (t) => {
  const hasher = new PasswordHasher({ concurrency: 1, depth: 1 })
  // Parallel logins for one name are attempts counted before hashing: a burst
  // past the back-off threshold would be refused 429 before reaching the queue.
  const { app } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '1000' }, { hasher })
  await signUp(app, 'ivan', PASSWORD)
  const attempts = Array.from({ length: 12 }, async () => await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'ivan', password: PASSWORD } }))
  const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(jwks.statusCode, 200)
  const results = await Promise.all(attempts)
  const shed = results.filter((r) => r.statusCode === 503)
  const ok = results.filter((r) => r.statusCode === 200)
  t.ok(shed.length > 0, `${shed.length} logins were shed`)
  t.ok(ok.length > 0, `${ok.length} logins succeeded`)
  t.equal(shed.length + ok.length, results.length, 'nothing but 200 and 503')
  for (const res of shed) {
    t.equal(res.headers['retry-after'], '1')
    t.same(res.json(), { error: 'temporarily_unavailable', error_description: 'too many passwords are being hashed; retry shortly' })
  }
})

t.test('JWKS: cache headers, strong ETag, 304', async (t) => {
  const { app, deps } = await buildTestApp(t, { TESSERA_JWKS_MAX_AGE: '2m' })
  const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'public, max-age=120, s-maxage=1')
  t.match(res.headers.etag, /^"[A-Za-z0-9_-]+"$/)
  t.match(res.headers['content-type'], /^application\/jwk-set\+json/)
  const keys = res.json().keys
  t.equal(keys.length, 1)
  t.same(Object.keys(keys[0]).sort(), ['alg', 'e', 'kid', 'kty', 'n', 'use'])
  t.equal(keys[0].kid, deps.keyring.signer?.kid)
  const again = await app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'if-none-match': String(res.headers.etag) } })
  t.equal(again.statusCode, 304)
  t.equal(again.body, '')
  const other = await app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'if-none-match': '"other"' } })
  t.equal(other.statusCode, 200)
})

t.test('metadata URLs follow TESSERA_ISSUER', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_ISSUER: 'https://login.example.com' })
  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    const res = await app.inject({ method: 'GET', url: path })
    t.equal(res.statusCode, 200)
    t.match(res.json(), {
      issuer: 'https://login.example.com',
      token_endpoint: 'https://login.example.com/oauth/token',
      revocation_endpoint: 'https://login.example.com/oauth/revoke',
      jwks_uri: 'https://login.example.com/.well-known/jwks.json',
    })
    // Not in the t.match: it would take a longer list, and [] would match any.
    t.same(res.json().grant_types_supported, ['password', 'refresh_token', 'client_credentials'])
    // t.match passes members it does not name: every URL the metadata holds, named or not, is under the issuer.
    const urls = Object.entries(res.json() as Record<string, unknown>).filter(([, value]) => typeof value === 'string' && /^[a-z]+:\/\//.test(value))
    t.ok(urls.length >= 5, `${urls.length} URLs`)
    t.same(urls.filter(([name, value]) => name !== 'issuer' && !String(value).startsWith('https://login.example.com/')), [], 'every URL is based on TESSERA_ISSUER')
  }
})

t.test('a login rehashes a password stored with old parameters', async (t) => {
  const weak = new PasswordHasher({ concurrency: 1, depth: 4, params: { memoryCost: 8192, timeCost: 1, parallelism: 1 } })
  const { app, connection } = await buildTestApp(t, {}, { productionArgon2: true })
  const hash = await weak.hash(PASSWORD)
  await connection.db.insertInto('users').values({ username: 'judy', password_hash: hash }).execute()
  await login(app, 'judy', PASSWORD)
  const row = await connection.db.selectFrom('users').select('password_hash').where('username', '=', 'judy').executeTakeFirstOrThrow()
  t.not(row.password_hash, hash)
  t.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
  await login(app, 'judy', PASSWORD)
})

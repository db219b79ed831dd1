/**
 * Hooks run only where they are needed (app.ts), and nothing a client relied
 * on went with the global ones: every answer, from the hot routes to errors,
 * carries the same security headers helmet set, and the request id.
 */
import t from 'tap'
import { SECURITY_HEADERS } from '../../src/security-headers.js'
import { buildTestApp, login, printedHooks, signUp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'

t.test('the security headers are helmet\'s for a JSON API, computed once', async (t) => {
  t.match(SECURITY_HEADERS, {
    'strict-transport-security': /^max-age=\d+; includeSubDomains$/,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'SAMEORIGIN',
    'cross-origin-opener-policy': 'same-origin',
    'x-xss-protection': '0'
  })
  t.notOk('content-security-policy' in SECURITY_HEADERS, 'no CSP on a JSON API')
  t.notOk('cross-origin-resource-policy' in SECURITY_HEADERS, 'the JWKS stays fetchable from other origins')
  t.ok(Object.isFrozen(SECURITY_HEADERS))
})

t.test('every kind of answer carries the security headers and a request id', async (t) => {
  // inject() comes from 127.0.0.1: trusted here, so the gateway's request id is kept (item 12 of issue 13).
  const { app } = await buildTestApp(t, { TESSERA_RATE_LIMIT: '100', TESSERA_TRUST_PROXY: '127.0.0.1' })
  await signUp(app, 'henry', PASSWORD)
  const tokens = await login(app, 'henry', PASSWORD)
  const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  const answers = {
    'GET /v1/me': await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${tokens.access_token}` } }),
    'GET /v1/me without a token': await app.inject({ method: 'GET', url: '/v1/me' }),
    'GET the JWKS': jwks,
    'GET the JWKS, 304': await app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'if-none-match': String(jwks.headers.etag) } }),
    'POST /oauth/token refresh': await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token } }),
    'POST /oauth/token, bad grant': await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'nope' } }),
    'GET /healthz': await app.inject({ method: 'GET', url: '/healthz' }),
    'an unknown route': await app.inject({ method: 'GET', url: '/nowhere' })
  }
  t.same(Object.values(answers).map((r) => r.statusCode), [200, 401, 200, 304, 200, 400, 200, 404])
  for (const [name, res] of Object.entries(answers)) {
    for (const [header, value] of Object.entries(SECURITY_HEADERS)) t.equal(res.headers[header], value, `${name}: ${header}`)
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/, `${name}: request id`)
  }
  t.equal((await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'given-by-gateway' } })).headers['x-request-id'], 'given-by-gateway')
})

t.test('the per-IP limiter runs on the limited routes only', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_RATE_LIMIT: '2' })
  const revoke = await app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: 'not-a-token' } })
  t.equal(revoke.headers['ratelimit-limit'], '2', 'a limited route counts')
  for (const url of ['/.well-known/jwks.json', '/healthz', '/.well-known/openid-configuration']) {
    for (let i = 0; i < 3; i++) {
      const res = await app.inject({ method: 'GET', url })
      t.equal(res.statusCode, 200, `${url} ${i + 1}`)
      t.notOk('ratelimit-limit' in res.headers, `${url}: no limiter ran`)
    }
  }
  t.equal((await app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: 'not-a-token' } })).statusCode, 200, 'the other routes spent none of the budget')
  t.equal((await app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: 'not-a-token' } })).statusCode, 429)
})

t.test('the hot routes run three hooks; the limiter and the shedding only where they apply', async (t) => {
  const { app } = await buildTestApp(t)
  await app.ready()
  const hooksOf = printedHooks(t, app)
  const bare = ['(onRequest) ["securityHeaders()"]', '(onResponse) ["logAndCount()"]']
  for (const route of ['/.well-known/jwks.json (GET, HEAD)', '/healthz (GET)']) {
    const hooks = hooksOf(route)
    for (const line of bare) t.match(hooks, line, `${route}: ${line}`)
    t.notMatch(hooks, 'preHandler', `${route}: no preHandler`)
    t.notMatch(hooks, 'preParsing', `${route}: no body, so no check of its encoding`)
  }
  for (const route of ['/oauth/token (POST)', '/v1/users (POST)', '/v1/password (PUT)']) {
    t.match(hooksOf(route), '(preParsing) ["refuseUnreadableBody()"]', `${route}: a body that cannot be read as sent is refused before parsing`)
  }
  t.match(hooksOf('/v1/me (GET)'), '(onRequest) ["securityHeaders()","authenticate()"]', '/v1/me: only the token, before anything else')
  t.notMatch(hooksOf('/v1/me (GET)'), 'preHandler', '/v1/me: its one query reads the session')
  for (const route of ['/oauth/token (POST)', '/v1/users (POST)']) {
    t.match(hooksOf(route), '(onRequest) ["securityHeaders()"]', `${route}: nothing before the body but the headers`)
  }
  t.match(hooksOf('/v1/password (PUT)'), '(onRequest) ["securityHeaders()","authenticate()"]', '/v1/password: the token before the body')
  for (const route of ['/oauth/token (POST)', '/v1/users (POST)', '/v1/password (PUT)']) {
    t.match(hooksOf(route), '(preValidation) ["shedArgon2Work()","anonymous()"]', `${route}: shed first, then the limiter`)
  }
  t.match(hooksOf('/oauth/revoke (POST)'), '(onRequest) ["securityHeaders()","anonymous()"]', 'revoke is limited')
  t.notMatch(hooksOf('/oauth/revoke (POST)'), 'shedArgon2Work', 'revoke hashes nothing')
  t.match(hooksOf('/v1/password (PUT)'), '(preHandler) ["requireLiveSession()"]', 'a password change is shed before it reads its session')
})

t.test('a route\'s own options declare its policy; SimpleJWT\'s routes declare the token endpoint\'s', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_SIMPLEJWT_PREFIX: '/api/token' })
  app.post('/test/limited', { config: { rateLimited: true } }, async () => ({ ok: true }))
  app.post('/test/hashing', { config: { hashesPassword: 'always' } }, async () => ({ ok: true }))
  app.post('/test/plain', async () => ({ ok: true }))
  await app.ready()
  const hooksOf = printedHooks(t, app)
  t.match(hooksOf('/test/limited (POST)'), '(onRequest) ["securityHeaders()","anonymous()"]', 'rateLimited: the limiter')
  t.notMatch(hooksOf('/test/limited (POST)'), 'shedArgon2Work')
  t.match(hooksOf('/test/hashing (POST)'), '(preValidation) ["shedArgon2Work()"]', 'hashesPassword: shed')
  t.notMatch(hooksOf('/test/hashing (POST)'), 'anonymous()')
  t.notMatch(hooksOf('/test/plain (POST)'), 'anonymous()', 'no policy: no limiter')
  t.notMatch(hooksOf('/test/plain (POST)'), 'shedArgon2Work', 'no policy: no shedding')
  // Printed as a tree: the login's path in full, the others under it.
  for (const route of ['refresh/ (POST)', 'verify/ (POST)', 'blacklist/ (POST)']) {
    t.match(hooksOf(route), '(onRequest) ["securityHeaders()","anonymous()"]', `SimpleJWT's ${route}: the limiter`)
  }
  t.match(hooksOf('/api/token/ (POST)'), '(preValidation) ["shedArgon2Work()","anonymous()"]', 'SimpleJWT\'s login is shed like the password grant, then limited')
  t.notMatch(hooksOf('refresh/ (POST)'), 'shedArgon2Work', 'its refresh hashes nothing')
  t.notMatch(hooksOf('/api/token/ (POST)'), 'refuseUnreadableBody', 'SimpleJWT\'s routes read bodies as DRF does')
})

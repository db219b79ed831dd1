import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildTestApp, login, signUp } from './helpers/app.js'
import { testConnection } from './helpers/db.js'

t.test('under pressure only password hashing is shed: refresh, JWKS and /healthz are served', async (t) => {
  const connection = await testConnection(t)
  const kek = randomBytes(32).toString('base64url')
  const calm = await buildTestApp(t, { TESSERA_KEK: kek }, { connection })
  await signUp(calm.app, 'frank', 'frank password')
  const tokens = await login(calm.app, 'frank', 'frank password')

  // A 1 MiB heap ceiling: every sample after start-up reads as pressure.
  const { app } = await buildTestApp(t, { TESSERA_KEK: kek, TESSERA_MAX_HEAP_MB: '1' }, { connection })
  await app.ready()
  await sleep(1500)
  t.ok(app.isUnderPressure(), 'the sampler sees the heap over its ceiling')

  const shed = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'frank', password: 'frank password' } })
  t.equal(shed.statusCode, 503)
  t.same(shed.json(), { error: 'temporarily_unavailable', error_description: 'the service is overloaded; retry shortly' })
  t.equal(shed.headers['retry-after'], '2')

  const signUpShed = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'gina', password: 'gina password' } })
  t.equal(signUpShed.statusCode, 503)
  t.equal(signUpShed.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.match(signUpShed.json(), { status: 503, title: 'Service Unavailable' })
  t.equal(signUpShed.headers['retry-after'], '2')

  const refreshed = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token } })
  t.equal(refreshed.statusCode, 200, 'refresh is served')
  t.equal((await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).statusCode, 200, 'the JWKS is served')
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, '/healthz is served')
  t.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200, '/metrics is served')

  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /^tessera_logins_total\{outcome="shed"\} 1$/m, 'the shed login is counted')
})

t.test('a full hashing queue sheds at once with 503 and Retry-After, before any database work', async (t) => {
  const { app, logs } = await buildTestApp(t, { TESSERA_HASH_CONCURRENCY: '1', TESSERA_HASH_QUEUE_DEPTH: '0' })
  const attempts = await Promise.all(Array.from({ length: 6 }, async (_, i) =>
    await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: `shed${i}`, password: 'some password' } })))
  const statuses = attempts.map((r) => r.statusCode).sort()
  t.ok(statuses.includes(400), 'the one in flight is answered')
  t.ok(statuses.includes(503), 'the rest are shed')
  for (const res of attempts.filter((r) => r.statusCode === 503)) {
    t.equal(res.headers['retry-after'], '1')
    t.equal(res.json().error, 'temporarily_unavailable')
  }
  // One line per shed request, its status saying why: not a second line with the reason.
  const shedLines = logs().split('\n').filter((line) => line.includes('"status":503'))
  t.equal(shedLines.length, attempts.filter((r) => r.statusCode === 503).length, 'each shed logs its request line')
  t.notMatch(logs(), /hashing queue full/, 'and nothing more at info')
})

t.test('a full hashing queue\'s 503 names the hashing, not logins, on every route that hashes, each in its own format', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_HASH_CONCURRENCY: '1', TESSERA_HASH_QUEUE_DEPTH: '0' })
  await signUp(app, 'hank', 'hank password')
  const { access_token: access } = await login(app, 'hank', 'hank password')
  const said = 'too many passwords are being hashed; retry shortly'
  const bursts = {
    'sign-up': async (i: number) => await app.inject({ method: 'POST', url: '/v1/users', payload: { username: `hank${i}`, password: 'some password' } }),
    'password change': async () => await app.inject({ method: 'PUT', url: '/v1/password', headers: { authorization: `Bearer ${access}` }, payload: { current_password: 'hank password', new_password: 'a new password' } }),
    'SimpleJWT login': async (i: number) => await app.inject({ method: 'POST', url: '/api/token/', payload: { username: `nobody${i}`, password: 'some password' } }),
    'password grant': async (i: number) => await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: `nobody${i}`, password: 'some password' } })
  }
  for (const [route, send] of Object.entries(bursts)) {
    const shed = (await Promise.all(Array.from({ length: 6 }, async (_, i) => await send(i)))).filter((res) => res.statusCode === 503)
    t.ok(shed.length > 0, `a burst of ${route} is shed`)
    for (const res of shed) {
      t.equal(res.headers['retry-after'], '1')
      const body = res.json()
      if (route === 'password grant') t.same(body, { error: 'temporarily_unavailable', error_description: said }, `${route}: RFC 6749's body`)
      else if (route === 'SimpleJWT login') t.same(body, { detail: said }, `${route}: DRF's body`)
      else t.match(body, { status: 503, title: 'Service Unavailable', detail: said }, `${route}: a problem`)
    }
  }
})

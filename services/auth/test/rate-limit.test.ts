import t from 'tap'
import type { App } from '../src/http/app-types.js'
import { buildTestApp } from './helpers/app.js'

// A garbage token is a cheap, well-formed revocation: 200, no hashing.
const revoke = async (app: App, headers: Record<string, string> = {}, remoteAddress?: string): Promise<Awaited<ReturnType<App['inject']>>> =>
  await app.inject({ method: 'POST', url: '/oauth/revoke', headers, payload: { token: 'not-a-token' }, ...(remoteAddress === undefined ? {} : { remoteAddress }) })

t.test('behind the trusted gateway, the limit trips per client IP', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_TRUST_PROXY: '127.0.0.1', TESSERA_RATE_LIMIT: '5' })
  const first = { 'x-forwarded-for': '203.0.113.7' }
  for (let i = 0; i < 5; i++) {
    const res = await revoke(app, first)
    t.equal(res.statusCode, 200, `request ${i + 1} of 5 passes`)
  }
  const limited = await revoke(app, first)
  t.equal(limited.statusCode, 429)
  t.same(limited.json(), { error: 'temporarily_unavailable', error_description: 'too many requests; retry later' }, 'RFC 6749 body on /oauth')
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${retryAfter}`)
  t.equal(limited.headers['ratelimit-limit'], '5')
  t.equal(limited.headers['ratelimit-remaining'], '0')
  t.ok(Number(limited.headers['ratelimit-reset']) > 0)
  t.ok(typeof limited.headers['x-request-id'] === 'string')

  const token = await app.inject({ method: 'POST', url: '/oauth/token', headers: first, payload: { grant_type: 'password', username: 'x', password: 'y' } })
  t.equal(token.statusCode, 429, 'one budget per client across the limited routes')
  t.equal(token.json().error, 'temporarily_unavailable')
  const signUp = await app.inject({ method: 'POST', url: '/v1/users', headers: first, payload: { username: 'someone', password: 'long enough password' } })
  t.equal(signUp.statusCode, 429)
  t.equal(signUp.headers['content-type'], 'application/problem+json; charset=utf-8', 'problem+json off /oauth')
  t.match(signUp.json(), { status: 429, title: 'Too Many Requests', request_id: signUp.headers['x-request-id'] })
  t.ok(Number(signUp.headers['retry-after']) > 0)

  t.equal((await revoke(app, { 'x-forwarded-for': '203.0.113.8' })).statusCode, 200, 'another client IP is not limited')
  t.equal((await revoke(app, { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' })).statusCode, 200, 'the gateway-appended address is the client, not what the client prepended')
  t.equal((await app.inject({ method: 'GET', url: '/healthz', headers: first })).statusCode, 200, 'health is never limited')
  t.equal((await app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: first })).statusCode, 200, 'the JWKS is never limited')

  // A peer that is not the gateway cannot pick its own key with the header.
  for (let i = 0; i < 5; i++) t.equal((await revoke(app, { 'x-forwarded-for': `192.0.2.${i}` }, '198.51.100.50')).statusCode, 200)
  t.equal((await revoke(app, { 'x-forwarded-for': '192.0.2.200' }, '198.51.100.50')).statusCode, 429, 'an untrusted peer is keyed by its own address')

  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /tessera_rate_limited_total\{route="\/oauth\/revoke"\} 2$/m)
})

t.test('a request over the limit is logged as refused by the rate limit, not as a malformed request, in every error format', async (t) => {
  const { app, logs } = await buildTestApp(t, { TESSERA_RATE_LIMIT: '1', TESSERA_SIMPLEJWT_COMPAT: 'on' })
  t.equal((await revoke(app)).statusCode, 200)
  t.equal((await revoke(app)).statusCode, 429)
  t.equal((await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'someone', password: 'long enough password' } })).statusCode, 429)
  const drf = await app.inject({ method: 'POST', url: '/api/token/', payload: { username: 'someone', password: 'long enough password' } })
  const wait = Number(drf.headers['retry-after'])
  t.ok(wait > 1, 'the window has most of its minute left')
  t.same([drf.statusCode, drf.json()], [429, { detail: `Request was throttled. Expected available in ${wait} seconds.` }], 'in DRF\'s words on SimpleJWT\'s routes, with the wait its Throttled names')
  const refusals = logs().split('\n').filter((line) => line.includes('"status":429') && !line.includes('"msg":"request"'))
  t.equal(refusals.length, 3, 'one line each')
  t.ok(refusals.every((line) => line.includes('"reason":"the per-IP rate limit","msg":"request refused"')), 'saying why')
  t.notMatch(logs(), /malformed|bad request/)
})

t.test('without a trusted proxy, a client-sent X-Forwarded-For changes nothing', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_RATE_LIMIT: '3' })
  for (let i = 0; i < 3; i++) t.equal((await revoke(app, { 'x-forwarded-for': `203.0.113.${i}` })).statusCode, 200)
  const res = await revoke(app, { 'x-forwarded-for': '203.0.113.99' })
  t.equal(res.statusCode, 429, 'every request counts against the peer address')
})

t.test('from the trusted peer, an X-Forwarded-For that is no address is no key of its own: the peer\'s address counts, and is what is logged and audited', async (t) => {
  const { app, connection, logs } = await buildTestApp(t, { TESSERA_TRUST_PROXY: '127.0.0.1', TESSERA_RATE_LIMIT: '3' })
  const login = await app.inject({ method: 'POST', url: '/oauth/token', headers: { 'x-forwarded-for': 'not-an-address' }, payload: { grant_type: 'password', username: 'nobody', password: 'whatever password' } })
  t.equal(login.statusCode, 400, 'a failed login, audited')
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push((await revoke(app, { 'x-forwarded-for': `not-an-address-${i}-${'x'.repeat(2000)}` })).statusCode)
  t.same(statuses, [200, 200, 429], 'one budget, the peer\'s, whatever text the header carries')
  t.notOk(logs().includes('not-an-address'), 'the text is neither logged')
  const rows = await connection.db.selectFrom('audit_events').select('ip').where('type', '=', 'login.failed').execute()
  t.same(rows.map((r) => r.ip), ['127.0.0.1'], 'nor audited: the peer\'s address is')
  t.equal((await revoke(app, { 'x-forwarded-for': '203.0.113.77' })).statusCode, 200, 'an address in the header is still the client\'s own key')
})

t.test('an IPv6 client is limited by its /64, as one host may use every address of it; an IPv4-mapped one by its IPv4 address', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_TRUST_PROXY: '127.0.0.1', TESSERA_RATE_LIMIT: '3' })
  // Three addresses of one /64, each spelled another way: one budget.
  for (const address of ['2001:db8:1:2::1', '2001:DB8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:2:0:0:0:7']) {
    t.equal((await revoke(app, { 'x-forwarded-for': address })).statusCode, 200, `${address} passes`)
  }
  t.equal((await revoke(app, { 'x-forwarded-for': '2001:db8:1:2:abcd::9' })).statusCode, 429, 'a fourth address of the same /64 is refused')
  t.equal((await revoke(app, { 'x-forwarded-for': '2001:db8:1:3::1' })).statusCode, 200, 'the next /64 has its own budget')

  // ::ffff:198.51.100.9 is the IPv4 client 198.51.100.9 (a dual-stack listener's view of it), not the /64 every such address shares.
  for (let i = 0; i < 3; i++) t.equal((await revoke(app, { 'x-forwarded-for': '::ffff:198.51.100.9' })).statusCode, 200)
  t.equal((await revoke(app, { 'x-forwarded-for': '198.51.100.9' })).statusCode, 429, 'the mapped address and the IPv4 one share a budget')
  t.equal((await revoke(app, { 'x-forwarded-for': '::ffff:198.51.100.10' })).statusCode, 200, 'another IPv4 client behind a mapped address is not limited')
})

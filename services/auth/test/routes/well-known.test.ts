/**
 * The JWKS answer is made once per published set (the body and ETag by the
 * keyring, the headers by the route), so these check that it changes exactly
 * when the published set does, and that skipping the drain hook on routes
 * that answer at once loses nothing while draining.
 */
import { generateKeyPairSync } from 'node:crypto'
import { connect } from 'node:net'
import t from 'tap'
import { request } from '@tessera/testkit'
import type { LoadedKey } from '../../src/keys/keyring.js'
import { buildTestApp, login, printedHooks, signUp } from '../helpers/app.js'
import type { App } from '../../src/http/app-types.js'

const JWKS = '/.well-known/jwks.json'

function newKey (kid: string, state: LoadedKey['state']): LoadedKey {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } as LoadedKey['jwk']
  return { kid, state, jwk, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), privateKey, publishedAt: new Date(), promotedAt: state === 'current' ? new Date() : null }
}

t.test('the JWKS answer changes exactly when the published set does', async (t) => {
  const { app, deps } = await buildTestApp(t, { TESSERA_JWKS_MAX_AGE: '2m' })
  const get = async (headers: Record<string, string> = {}) => await app.inject({ method: 'GET', url: JWKS, headers })
  const first = await get()
  t.equal(first.statusCode, 200)
  t.equal(first.headers['content-type'], 'application/jwk-set+json; charset=utf-8')
  t.equal(first.headers['cache-control'], 'public, max-age=120, s-maxage=1')
  const firstKids = (first.json() as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)

  const [current] = deps.keyring.keys
  if (current === undefined) throw new Error('no key loaded')
  deps.keyring.replace([{ ...current }])
  const reloaded = await get()
  t.equal(reloaded.body, first.body, 'a reload of the same set: the same body')
  t.equal(reloaded.headers.etag, first.headers.etag, 'and the same ETag')
  t.equal((await get({ 'if-none-match': String(first.headers.etag) })).statusCode, 304)

  const next = newKey('next-key', 'next')
  deps.keyring.replace([current, next])
  const published = await get()
  t.same((published.json() as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid).sort(), [...firstKids, 'next-key'].sort(), 'the next key is published at once')
  t.not(published.headers.etag, first.headers.etag, 'a new set, a new ETag')
  t.equal((await get({ 'if-none-match': String(first.headers.etag) })).statusCode, 200, 'the old ETag no longer matches')
  const notModified = await get({ 'if-none-match': String(published.headers.etag) })
  t.equal(notModified.statusCode, 304, 'the new one does')
  t.equal(notModified.body, '')
  t.equal(notModified.headers.etag, published.headers.etag)
  t.equal(notModified.headers['cache-control'], 'public, max-age=120, s-maxage=1', 'a 304 carries the caching a 200 would')
  t.notOk('content-type' in notModified.headers, 'and no representation metadata')
  const etag = String(published.headers.etag)
  for (const [header, status, what] of [
    [`"other", ${etag}`, 304, 'the tag among others (RFC 9110 §13.1.2)'],
    [`W/${etag}`, 304, 'the tag sent weak: If-None-Match compares weakly'],
    ['*', 304, 'any representation'],
    [`"other", ${String(first.headers.etag)}`, 200, 'a list without the current tag'],
    [`${etag}x`, 200, 'a longer tag is another tag']
  ] as const) t.equal((await get({ 'if-none-match': header })).statusCode, status, `If-None-Match: ${what}`)

  deps.keyring.replace([{ ...current, state: 'previous' }, { ...next, state: 'current', promotedAt: new Date() }])
  const promoted = await get()
  t.equal(promoted.body, published.body, 'a promotion publishes the same set: the same body')
  t.equal(promoted.headers.etag, published.headers.etag)

  deps.keyring.replace([{ ...next, state: 'current', promotedAt: new Date() }])
  const retired = await get()
  t.same((retired.json() as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid), ['next-key'], 'a key that leaves the set leaves the body')
  t.not(retired.headers.etag, published.headers.etag)
})

t.test('HEAD of the JWKS: a 200 with the headers of a GET and no body, a 304 that claims no length of zero', async (t) => {
  const { app } = await buildTestApp(t)
  const port = await listening(app)
  // Over a real socket: inject does not model HEAD's missing body.
  const url = `http://127.0.0.1:${port}${JWKS}`
  const get = await request(url)
  t.equal(get.status, 200)
  const head = await request(url, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.body, '', 'no body')
  t.equal(head.headers['content-length'], String(Buffer.byteLength(get.body)), 'the length a GET would carry')
  for (const name of ['etag', 'cache-control', 'content-type']) t.equal(head.headers[name], get.headers[name], `the same ${name}`)
  const etag = String(get.headers.etag)
  for (const method of ['GET', 'HEAD']) {
    const notModified = await request(url, { method, headers: { 'if-none-match': etag } })
    t.equal(notModified.status, 304, `${method} with a matching ETag`)
    t.equal(notModified.body, '')
    t.equal(notModified.headers.etag, etag)
    // RFC 9110 §8.6: a 304 may carry Content-Length only as the 200's length.
    t.ok(notModified.headers['content-length'] === undefined || notModified.headers['content-length'] === head.headers['content-length'],
      `${method}: no content-length but the 200's (got ${String(notModified.headers['content-length'])})`)
  }
})

t.test('the metadata has no claim with zero elements (RFC 8414 §3.2), so no response_types_supported: Tessera has no authorization endpoint', async (t) => {
  const { app } = await buildTestApp(t)
  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
    const metadata = (await app.inject({ method: 'GET', url: path })).json() as Record<string, unknown>
    const empty = Object.keys(metadata).filter((name) => Array.isArray(metadata[name]) && (metadata[name] as unknown[]).length === 0)
    t.same(empty, [], `${path}: no empty array`)
    t.notOk('response_types_supported' in metadata, `${path}: no response_types_supported`)
    t.notOk('authorization_endpoint' in metadata, `${path}: no authorization_endpoint`)
  }
})

t.test('the routes that answer at once run no drain hook; every other route does', async (t) => {
  const { app } = await buildTestApp(t)
  await app.ready()
  const hooksOf = printedHooks(t, app)
  for (const route of [`${JWKS} (GET, HEAD)`, '/.well-known/openid-configuration (GET)', '/.well-known/oauth-authorization-server (GET)']) {
    t.notMatch(hooksOf(route), 'closeWhileDraining', `${route}: no drain hook`)
    t.match(hooksOf(route), '(onResponse) ["logAndCount()"]', `${route}: still logged and counted`)
  }
  for (const route of ['/healthz (GET)', '/v1/me (GET)', '/oauth/token (POST)']) {
    t.match(hooksOf(route), '(onSend) ["closeWhileDraining()"]', `${route}: the drain hook`)
  }
})

/** Raw HTTP/1.1 on one connection: each request written when its turn comes, everything read until the server closes. */
async function oneConnection (port: number, steps: Array<{ path: string, request?: string, before?: () => Promise<void> }>): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  let received = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => { received += chunk })
  const ended = new Promise<void>((resolve, reject) => {
    socket.on('close', () => { resolve() })
    socket.on('error', reject)
  })
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  for (const step of steps) {
    await step.before?.()
    socket.write(step.request ?? `GET ${step.path} HTTP/1.1\r\nHost: tessera.test\r\n\r\n`)
  }
  await ended
  return received
}

/** GET /test/slow answers after 300 ms; the promise resolves when a request is in it. */
async function slowRoute (app: App): Promise<void> {
  let started = (): void => {}
  const inFlight = new Promise<void>((resolve) => { started = resolve })
  app.get('/test/slow', async () => {
    started()
    await new Promise((resolve) => setTimeout(resolve, 300))
    return { done: true }
  })
  return await inFlight
}

async function listening (app: App): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  return typeof address === 'object' && address !== null ? address.port : 0
}

t.test('draining: the request in flight closes its connection, and a JWKS request behind it does not keep it alive', async (t) => {
  const { app, logs } = await buildTestApp(t)
  const inFlight = slowRoute(app)
  const port = await listening(app)
  let closed: Promise<void> | undefined
  const received = await oneConnection(port, [
    { path: '/test/slow' },
    // Closing starts while /test/slow is in flight; the JWKS request comes after, on the same (busy, so not closed as idle) connection.
    { path: JWKS, before: async () => { await inFlight; closed = app.close() } }
  ])
  await closed
  const answers = received.split(/(?=HTTP\/1\.1 )/).filter((a) => a !== '')
  t.match(answers[0], /^HTTP\/1\.1 200 /, 'the request in flight is answered')
  t.match(answers[0], /\r\nconnection: close\r\n/i, 'and closes its connection (the drain hook)')
  // Node drops what was pipelined behind an answer that closes; were it answered, it would be Fastify's 503, closing too.
  t.ok(answers.length <= 2, received)
  for (const later of answers.slice(1)) {
    t.match(later, /^HTTP\/1\.1 503 /, 'a JWKS request once closing has started is refused by Fastify itself')
    t.match(later, /\r\nconnection: close\r\n/i)
  }
  t.pass('the server ended the connection: no JWKS answer kept it alive')
  // Node routes a pipelined request at once and holds its answer back: the
  // JWKS request reached Fastify's 503, which logs nothing, and was not
  // answered before routing (http/answer-before-routing.ts), which logs.
  t.notMatch(logs(), `"route":"${JWKS}"`, 'once draining, the JWKS is not answered before routing')
})

// Why Fastify's own 503 (return503OnClosing) is kept although its body is in
// neither contract format: on HTTP/1.1 it is never sent (Node drops what was
// pipelined behind an answer that closes), and the alternative, routing such a
// request, would run it and drop its answer: a refresh token spent unanswered.
t.test('draining: a refresh pipelined behind the request in flight is never run, so its token is not spent', async (t) => {
  const { app, connection } = await buildTestApp(t)
  const inFlight = slowRoute(app)
  await signUp(app, 'pipelined', 'a long enough password')
  const { refresh_token: refreshToken } = await login(app, 'pipelined', 'a long enough password')
  const port = await listening(app)
  const form = `grant_type=refresh_token&refresh_token=${refreshToken}`
  let closed: Promise<void> | undefined
  const received = await oneConnection(port, [
    { path: '/test/slow' },
    {
      path: '/oauth/token',
      request: `POST /oauth/token HTTP/1.1\r\nHost: tessera.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${form.length}\r\n\r\n${form}`,
      before: async () => { await inFlight; closed = app.close() }
    }
  ])
  await closed
  const answers = received.split(/(?=HTTP\/1\.1 )/).filter((a) => a !== '')
  t.equal(answers.length, 1, `only the request in flight is answered: ${received}`)
  t.match(answers[0], /^HTTP\/1\.1 200 /)
  const spent = await connection.db.selectFrom('refresh_tokens').select((eb) => eb.fn.countAll<string>().as('n')).where('used_at', 'is not', null).executeTakeFirstOrThrow()
  t.equal(Number(spent.n), 0, 'the refresh token is still unused')
  const sessions = await connection.db.selectFrom('refresh_tokens').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  t.equal(Number(sessions.n), 1, 'and no successor was issued')
})

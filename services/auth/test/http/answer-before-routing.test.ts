/**
 * The JWKS is answered before Fastify routes it (http/answer-before-routing.ts).
 * These hold that a verifier cannot tell: over a socket, each answer is the
 * one the registered route gives (inject() goes through Fastify's routing, so
 * it is the routed answer), with its log line, its histogram sample and its
 * request id; and that whatever the early answer does not cover still reaches
 * Fastify.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import t from 'tap'
import { answerBeforeRouting } from '../../src/http/answer-before-routing.js'
import type { App } from '../../src/http/app-types.js'
import { buildTestApp } from '../helpers/app.js'

const JWKS = '/.well-known/jwks.json'

interface Answer { status: number, headers: IncomingHttpHeaders, body: string }

async function over (port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: { host: 'tessera.test', ...headers } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

/** The headers that are the answer's own: not the connection's, the date's or the request id's. */
function ownHeaders (headers: Record<string, unknown>): Record<string, unknown> {
  const { date, connection, 'keep-alive': keepAlive, 'x-request-id': requestId, ...own } = headers
  return own
}

/** The app listening, with the paths of the requests Fastify routed. */
async function listeningApp (app: App): Promise<{ port: number, routed: string[] }> {
  const routed: string[] = []
  app.addHook('onRequest', (request, _reply, done) => {
    routed.push(`${request.method} ${request.url}`)
    done()
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { port: (app.server.address() as AddressInfo).port, routed }
}

const requestLines = (logs: string): Array<Record<string, unknown>> =>
  logs.split('\n').filter((line) => line.includes('"msg":"request"')).map((line) => JSON.parse(line) as Record<string, unknown>)

t.test('over a socket, the JWKS is answered before routing, with the routed answer', async (t) => {
  const { app } = await buildTestApp(t)
  const { port, routed } = await listeningApp(app)
  const etag = String((await app.inject({ method: 'GET', url: JWKS })).headers.etag)
  routed.length = 0
  const cases: Array<['GET' | 'HEAD', string, Record<string, string>]> = [
    ['GET', 'the set', {}],
    ['GET', 'its tag: 304', { 'if-none-match': etag }],
    ['GET', 'a list naming its weak tag: 304', { 'if-none-match': `"other", W/${etag}` }],
    ['GET', 'another tag: the set', { 'if-none-match': '"other"' }],
    ['HEAD', 'the set\'s headers', {}],
    ['HEAD', 'its tag: 304', { 'if-none-match': etag }]
  ]
  for (const [method, answer, headers] of cases) {
    const what = `${method} ${answer}`
    const early = await over(port, method, JWKS, headers)
    const inject = await app.inject({ method, url: JWKS, headers })
    t.equal(early.status, inject.statusCode, `${what}: the status`)
    t.same(ownHeaders(early.headers), ownHeaders(inject.headers), `${what}: the headers`)
    t.equal(early.body, inject.body, `${what}: the body`)
    t.match(early.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, `${what}: a request id`)
    t.equal(early.headers.connection, 'keep-alive', `${what}: the connection kept`)
  }
  t.equal(routed.filter((line) => line.endsWith(JWKS)).length, cases.length, 'Fastify routed only the inject() requests')
  t.equal(routed.length, cases.length)
})

t.test('an early answer has the routed answer\'s log line and histogram sample', async (t) => {
  const { app, logs, deps } = await buildTestApp(t)
  const { port } = await listeningApp(app)
  const early = await over(port, 'GET', JWKS)
  const routed = await over(port, 'GET', `${JWKS}?routed`)
  t.equal(routed.status, 200, 'with a query, the same path is routed')
  const lines = requestLines(logs())
  const earlyLine = lines.find((line) => line.reqId === early.headers['x-request-id'])
  const routedLine = lines.find((line) => line.reqId === routed.headers['x-request-id'])
  t.match(earlyLine, { level: 30, method: 'GET', route: JWKS, status: 200, ip: '127.0.0.1', duration_ms: Number })
  const fields = (line: Record<string, unknown> | undefined): string[] => Object.keys(line ?? {}).sort()
  t.same(fields(earlyLine), fields(routedLine), 'the same fields as the routed line')
  t.same({ ...earlyLine, reqId: 0, time: 0, duration_ms: 0 }, { ...routedLine, reqId: 0, time: 0, duration_ms: 0 }, 'and the same values but the id and the times')
  await over(port, 'HEAD', JWKS, { 'if-none-match': String(early.headers.etag) })
  const metrics = await deps.metrics.render()
  t.match(metrics, /tessera_http_request_duration_seconds_count\{method="GET",route="\/.well-known\/jwks.json",status="200"\} 2$/m, 'both counted under the route')
  t.match(metrics, /tessera_http_request_duration_seconds_count\{method="HEAD",route="\/.well-known\/jwks.json",status="304"\} 1$/m, 'a HEAD\'s 304 too')
})

t.test('at LOG_LEVEL=warn an early answer is counted, with no line', async (t) => {
  const { app, logs, deps } = await buildTestApp(t, { LOG_LEVEL: 'warn' })
  const { port, routed } = await listeningApp(app)
  t.equal((await over(port, 'GET', JWKS)).status, 200)
  t.same(routed, [], 'answered before routing')
  t.same(requestLines(logs()), [], 'no request line below its level')
  t.match(await deps.metrics.render(), /tessera_http_request_duration_seconds_count\{method="GET",route="\/.well-known\/jwks.json",status="200"\} 1$/m)
})

/** A route at `path` that answers once released; `entered` resolves when a request is in it. */
function heldRoute (app: App, path: string): { entered: Promise<void>, release: () => void } {
  let enter = (): void => {}
  let release = (): void => {}
  const entered = new Promise<void>((resolve) => { enter = resolve })
  const released = new Promise<void>((resolve) => { release = resolve })
  app.get(path, async () => {
    enter()
    await released
    return { done: true }
  })
  return { entered, release }
}

// Node answers pipelined requests in order: a JWKS request behind one still
// in flight is answered early at once, but its answer is sent only after the
// one ahead, or never if the connection ends first. Fastify records a routed
// answer once it is sent (onResponse, on the response's `finish`).
t.test('an early answer behind another is recorded once it is sent, after the one ahead, and not at all if it never is, as a routed one', async (t) => {
  const { app, logs, deps } = await buildTestApp(t)
  const pipelined = (ahead: string): string => `GET ${ahead} HTTP/1.1\r\nHost: tessera.test\r\n\r\nGET ${JWKS} HTTP/1.1\r\nHost: tessera.test\r\n\r\n`
  const gone = heldRoute(app, '/test/gone')
  const stays = heldRoute(app, '/test/stays')
  const { port } = await listeningApp(app)
  const jwksLines = (): Array<Record<string, unknown>> => requestLines(logs()).filter((line) => line.route === JWKS)

  // The client leaves while the request ahead is in flight: the JWKS answer is never sent.
  const serverSideClosed = new Promise<void>((resolve) => { app.server.once('connection', (socket) => { socket.once('close', () => { resolve() }) }) })
  const leaving = connect(port, '127.0.0.1')
  leaving.on('error', () => {})
  leaving.write(pipelined('/test/gone'))
  await gone.entered
  leaving.destroy()
  await serverSideClosed
  gone.release()
  t.same(jwksLines(), [], 'no line for an answer never sent')
  t.notMatch(await deps.metrics.render(), `route="${JWKS}"`, 'and no sample')

  // The client stays: the JWKS answer is sent after the one ahead, and recorded after it.
  const staying = connect(port, '127.0.0.1')
  let received = ''
  staying.setEncoding('utf8')
  const bothAnswered = new Promise<void>((resolve) => {
    staying.on('data', (chunk: string) => {
      received += chunk
      if (received.endsWith('}]}')) resolve()
    })
  })
  staying.write(pipelined('/test/stays'))
  await stays.entered
  t.same(jwksLines(), [], 'not recorded while its answer waits behind the one ahead')
  stays.release()
  await bothAnswered
  staying.destroy()
  t.match(received, /^HTTP\/1\.1 200 [^]*HTTP\/1\.1 200 [^]*"keys"/, 'both answered, in order')
  t.same(requestLines(logs()).map((line) => line.route), ['/test/stays', JWKS], 'the lines in the order the answers were sent')
  t.match(await deps.metrics.render(), new RegExp(`tessera_http_request_duration_seconds_count\\{method="GET",route="${JWKS.replaceAll('.', '\\.')}",status="200"\\} 1$`, 'm'), 'one sample')
})

t.test('a drain drops an early answer pipelined behind the request in flight, unrecorded, as a routed one', async (t) => {
  const { app, logs, deps } = await buildTestApp(t)
  const held = heldRoute(app, '/test/held')
  let drainBegun = (): void => {}
  const draining = new Promise<void>((resolve) => { drainBegun = resolve })
  // After buildApp's own preClose hook, which begins the drain.
  app.addHook('preClose', async () => { drainBegun() })
  const { port } = await listeningApp(app)
  const socket = connect(port, '127.0.0.1')
  let received = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => { received += chunk })
  const ended = new Promise<void>((resolve) => { socket.on('close', () => { resolve() }) })
  // Both requests are in before closing begins: the JWKS one is answered early, its answer waiting behind the held one's.
  socket.write(`GET /test/held HTTP/1.1\r\nHost: tessera.test\r\n\r\nGET ${JWKS} HTTP/1.1\r\nHost: tessera.test\r\n\r\n`)
  await held.entered
  const closed = app.close()
  await draining
  held.release()
  await Promise.all([closed, ended])
  t.equal(received.match(/HTTP\/1\.1 /g)?.length, 1, 'only the held request is answered, closing its connection')
  t.match(received, /\r\nconnection: close\r\n/i)
  t.same(requestLines(logs()).map((line) => line.route), ['/test/held'], 'no line for the dropped JWKS answer')
  t.notMatch(await deps.metrics.render(), `route="${JWKS}"`, 'and no sample')
})

t.test('the request id and the client address are the gateway\'s from a trusted peer only, as on a routed request', async (t) => {
  const forwarded = { 'x-request-id': 'given-by-gateway', 'x-forwarded-for': '198.51.100.7' }
  const trusting = await buildTestApp(t, { TESSERA_TRUST_PROXY: '127.0.0.1' })
  const trusted = await listeningApp(trusting.app)
  const kept = await over(trusted.port, 'GET', JWKS, forwarded)
  t.equal(kept.headers['x-request-id'], 'given-by-gateway')
  t.match(requestLines(trusting.logs()).find((line) => line.reqId === 'given-by-gateway'), { ip: '198.51.100.7' }, 'the client as the gateway names it')
  const notAnAddress = await over(trusted.port, 'GET', JWKS, { 'x-forwarded-for': 'not-an-address' })
  t.match(requestLines(trusting.logs()).find((line) => line.reqId === notAnAddress.headers['x-request-id']), { ip: '127.0.0.1' }, 'anything but an address counts as the peer')
  t.same(trusted.routed, [])

  const direct = await buildTestApp(t)
  const { port } = await listeningApp(direct.app)
  const replaced = await over(port, 'GET', JWKS, forwarded)
  t.not(replaced.headers['x-request-id'], 'given-by-gateway', 'from any other peer, the id is this instance\'s')
  t.match(requestLines(direct.logs()).find((line) => line.reqId === replaced.headers['x-request-id']), { ip: '127.0.0.1' })
})

t.test('what the early answer does not cover reaches Fastify', async (t) => {
  const { app } = await buildTestApp(t)
  const { port, routed } = await listeningApp(app)
  const cases: Array<[string, string, string, Record<string, string>, number]> = [
    ['a query', 'GET', `${JWKS}?x=1`, {}, 200],
    ['a trailing slash', 'GET', `${JWKS}/`, {}, 404],
    ['another method', 'DELETE', JWKS, {}, 405],
    ['a Host that is not a host', 'GET', JWKS, { host: 'tessera test' }, 400],
    ['the metadata', 'GET', '/.well-known/openid-configuration', {}, 200]
  ]
  for (const [what, method, path, headers, status] of cases) {
    routed.length = 0
    const answer = await over(port, method, path, headers)
    t.equal(answer.status, status, `${what}: ${status}`)
    // A refused Host ends the onRequest hooks at the first, before the one that notes routed requests.
    if (status === 400) t.match(answer.headers['content-type'], /^application\/problem\+json/, `${what}: Fastify's refusal`)
    else t.same(routed, [`${method} ${path}`], `${what}: routed`)
    t.ok(answer.headers['x-request-id'] !== undefined && answer.headers['x-frame-options'] !== undefined, `${what}: the request id and the security headers`)
  }
})

t.test('answerBeforeRouting: the early routes only, the rest and what is passed on to the routing listener', async (t) => {
  const routing = (_message: unknown, response: { end: (body: string) => void }): void => { response.end('routed') }
  const server = createServer(routing)
  t.throws(() => { answerBeforeRouting(server, () => {}, [], { commonHeaders: {}, passOn: () => false, requestIdOf: () => 'id', record: () => {} }) }, /one request listener/, 'a server made with another listener is refused')
  let passOn = false
  const recorded: unknown[] = []
  const answer = { status: 200, headers: { 'content-type': 'text/plain' }, body: 'early ✓' }
  answerBeforeRouting(server, routing, [{ path: '/early', methods: new Set(['GET']), answer: () => answer }], {
    commonHeaders: { 'x-common': 'yes' },
    passOn: () => passOn,
    requestIdOf: () => 'id-1',
    record: (_message, route, status, elapsed, requestId) => { recorded.push([route, status, typeof elapsed, requestId]) }
  })
  t.equal(server.listenerCount('request'), 1)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const { port } = server.address() as AddressInfo
  const early = await over(port, 'GET', '/early')
  t.match(early, { status: 200, body: 'early ✓', headers: { 'x-common': 'yes', 'x-request-id': 'id-1', 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength('early ✓')) } })
  t.same(recorded, [['/early', 200, 'number', 'id-1']], 'recorded once')
  t.equal((await over(port, 'POST', '/early')).body, 'routed', 'another method')
  t.equal((await over(port, 'GET', '/other')).body, 'routed', 'another path')
  passOn = true
  t.equal((await over(port, 'GET', '/early')).body, 'routed', 'passed on')
  t.equal(recorded.length, 1, 'only the early answer recorded')
})

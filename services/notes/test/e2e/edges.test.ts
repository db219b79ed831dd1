/**
 * notes over real HTTP against a real database, behind tokens signed with a
 * key of the test's own: the edges of its input a client can reach.
 */
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { Agent, get as httpGet } from 'node:http'
import { connect as netConnect, type AddressInfo } from 'node:net'
import { sql } from 'kysely'
import { pino } from 'pino'
import t from 'tap'
import { memorySink, request } from '@tessera/testkit'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { connect, migrate } from '../../src/db.js'
import { createTestDatabase, forge } from '../helpers.js'

const config = loadConfig({ DATABASE_URL: await createTestDatabase(t) })
const db = connect(config.databaseUrl)
t.teardown(async () => { await db.destroy() })
await migrate(db)
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
const logs = memorySink()
const app = await buildApp(config, { db, logger: pino({ level: 'info' }, logs.stream), keys: async () => pem })
t.teardown(async () => { await app.close() })
await app.listen({ port: 0, host: '127.0.0.1' })
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
const now = Math.floor(Date.now() / 1000)
const token = forge({ alg: 'RS256', typ: 'at+jwt', kid: 'local' }, { iss: config.issuer, aud: config.audience, sub: randomUUID(), scope: 'notes:read notes:write', iat: now, exp: now + 600 },
  (data) => sign('sha256', Buffer.from(data), privateKey))
const bearer = { authorization: `Bearer ${token}` }

t.test('a note id Postgres would not read as a uuid is a 400, not a 500 from the delete', async (t) => {
  // Ajv's "uuid" format takes an RFC 4122 URN too; Postgres's uuid type does not.
  for (const id of ['urn:uuid:00000000-0000-4000-8000-000000000000', 'URN:UUID:00000000-0000-4000-8000-000000000000']) {
    const res = await request(`${base}/notes/${id}`, { method: 'DELETE', headers: bearer })
    t.equal(res.status, 400, id)
    t.match(res.json(), { type: 'about:blank', title: 'Bad Request', status: 400, detail: 'params/id must be a UUID' })
  }
  const garbled = await request(`${base}/notes/not-a-uuid`, { method: 'DELETE', headers: bearer })
  t.match({ status: garbled.status, body: garbled.json() }, { status: 400, body: { detail: 'params/id must be a UUID' } }, 'said in words, not as the regex')
  const upper = await request(`${base}/notes/00000000-0000-4000-8000-00000000000A`, { method: 'DELETE', headers: bearer })
  t.equal(upper.status, 404, 'a uuid in capitals is still a uuid: no such note')
  t.notMatch(logs.text(), 'unexpected error')
})

t.test('closing (SIGTERM) waits for a request in flight, then is not held open by its keep-alive connection', async (t) => {
  const draining = await buildApp(config, { db, logger: pino({ level: 'silent' }), keys: async () => pem })
  await draining.listen({ port: 0, host: '127.0.0.1' })
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => { agent.destroy() })
  // The request waits on a lock held here, so it is in flight when closing starts.
  const locker = connect(config.databaseUrl)
  t.teardown(async () => { await locker.destroy() })
  const answered = await locker.transaction().execute(async (trx) => {
    await sql`LOCK TABLE notes.notes IN ACCESS EXCLUSIVE MODE`.execute(trx)
    const inFlight = new Promise<{ status: number, connection: string | undefined }>((resolve, reject) => {
      httpGet(`http://127.0.0.1:${(draining.server.address() as AddressInfo).port}/notes`, { agent, headers: bearer }, (res) => {
        res.resume()
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }) })
      }).on('error', reject)
    })
    await new Promise((resolve) => setTimeout(resolve, 300))
    return { inFlight, closed: draining.close() }
  })
  const { status, connection } = await answered.inFlight
  t.equal(status, 200, 'the request in flight is answered')
  t.equal(connection, 'close', 'and told its connection closes')
  const started = Date.now()
  const outcome = await Promise.race([answered.closed.then(() => 'closed'), new Promise((resolve) => setTimeout(resolve, 5000, 'still open'))])
  t.equal(outcome, 'closed', `closed ${Date.now() - started} ms after the answer, not at the keep-alive timeout (72 s)`)
})

t.test('what the router refuses before any route (a bad percent-encoding, an over-long id) is problem+json, and logged', async (t) => {
  const cases: Array<[path: string, status: number, detail: string]> = [
    ['/notes/%ZZ', 400, 'the path is not a valid URL'],
    ['/%E0%A4%A', 400, 'the path is not a valid URL'],
    [`/notes/${'a'.repeat(150)}`, 414, 'a path segment is longer than allowed']
  ]
  for (const [path, status, detail] of cases) {
    const res = await request(`${base}${path}`, { method: 'DELETE', headers: bearer })
    t.equal(res.status, status, path)
    t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8')
    const body = res.json<Record<string, unknown>>()
    t.match(body, { type: 'about:blank', status, detail, request_id: /^[0-9a-f-]{36}$/ })
    t.notMatch(JSON.stringify(body), 'a'.repeat(150), 'the path that was wrong is not echoed back')
    t.equal(logs.lines().filter((line) => line.includes(String(body.request_id)) && line.includes('"msg":"request"')).length, 1, 'one request line, as every request has')
  }
})

/** A request written on a raw connection, and everything the server sent before closing it. */
async function raw (text: string): Promise<string> {
  const socket = netConnect(Number(new URL(base).port), '127.0.0.1')
  socket.write(text)
  let answer = ''
  socket.on('data', (chunk: Buffer) => { answer += chunk.toString() })
  await new Promise((resolve) => socket.on('close', resolve))
  return answer
}

t.test('a request Node\'s parser refuses (not HTTP, headers too large) is answered problem+json, not Fastify\'s own shape', async (t) => {
  const cases: Array<[text: string, status: string, detail: string]> = [
    ['GET /notes HTTP/1.1\r\nHost: notes.test\r\nNot a header\r\n\r\n', '400 Bad Request', 'the request is not valid HTTP'],
    [`GET /notes HTTP/1.1\r\nHost: notes.test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, '431 Request Header Fields Too Large', 'the request\'s headers are larger than the server accepts']
  ]
  for (const [text, status, detail] of cases) {
    const answer = await raw(text)
    t.match(answer, new RegExp(`^HTTP/1\\.1 ${status}\\r\\n`), status)
    t.match(answer, /\r\nContent-Type: application\/problem\+json\r\n/i)
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
    t.same(body, { type: 'about:blank', title: status.slice(4), status: Number(status.slice(0, 3)), detail, request_id: /\r\nx-request-id: ([^\r]+)\r\n/i.exec(answer)?.[1] }, 'naming its request, as its X-Request-Id does')
  }
})

t.test('an absolute-form target (RFC 9112 §3.2.2) is served, logged and echoed as its path: a password in its userinfo is in no log line or answer', async (t) => {
  const secret = 'hunter2-in-the-userinfo'
  const cases: Array<[target: string, status: number, path: string]> = [
    [`http://reader:${secret}@notes.test/notes?x=1`, 200, '/notes'],
    [`HTTPS://reader:${secret}@notes.test/nope`, 404, '/nope'],
    [`http://reader:${secret}@notes.test?x=1`, 404, '/']
  ]
  for (const [target, status, path] of cases) {
    const before = logs.lines().length
    const answer = await raw(`GET ${target} HTTP/1.1\r\nHost: notes.test\r\nAuthorization: ${bearer.authorization}\r\nConnection: close\r\n\r\n`)
    t.match(answer, new RegExp(`^HTTP/1\\.1 ${status} `), `${target}: ${status}`)
    t.notMatch(answer, secret, `${target}: the answer does not repeat the userinfo`)
    const body = answer.slice(answer.indexOf('\r\n\r\n') + 4)
    if (status === 404) t.match(JSON.parse(body), { instance: path, detail: `GET ${path} does not exist` }, `${target}: the path is the problem's instance`)
    const logged = logs.lines().slice(before).map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'request')
    t.same(logged.map((line) => [line.method, line.path, line.status]), [['GET', path, status]], `${target}: logged as ${path}`)
  }
  t.notOk(logs.lines().some((line) => line.includes(secret)), 'no log line holds the userinfo')
})

t.test('GET /notes answers the newest 500 notes, and says when there were more: a client is not left to think it got them all', async (t) => {
  const owner = randomUUID()
  const ownToken = forge({ alg: 'RS256', typ: 'at+jwt', kid: 'local' }, { iss: config.issuer, aud: config.audience, sub: owner, scope: 'notes:read', iat: now, exp: now + 600 },
    (data) => sign('sha256', Buffer.from(data), privateKey))
  const list = async (): Promise<{ notes: Array<{ text: string }>, truncated: unknown }> =>
    (await request(`${base}/notes`, { headers: { authorization: `Bearer ${ownToken}` } })).json()
  // Oldest first: note 1 a day ago, note 500 a minute ago.
  await db.insertInto('notes.notes').values(Array.from({ length: 500 }, (_, i) => ({
    owner, text: `note ${i + 1}`, created_at: sql<Date>`now() - make_interval(mins => ${500 - i})`
  }))).execute()
  const full = await list()
  t.equal(full.notes.length, 500)
  t.equal(full.truncated, false, 'exactly 500: all of them')
  await db.insertInto('notes.notes').values({ owner, text: 'note 501' }).execute()
  const cut = await list()
  t.equal(cut.notes.length, 500)
  t.equal(cut.truncated, true, 'one more: the answer says it is not all')
  t.equal(cut.notes[0]?.text, 'note 501', 'the newest first')
  t.equal(cut.notes[499]?.text, 'note 2', 'the oldest left out')
})

t.test('each route needs its own scope: notes:read for GET, notes:write for POST and DELETE, a whole name in the space-separated list', async (t) => {
  const withScope = (scope: string | undefined): Record<string, string> => ({
    authorization: `Bearer ${forge({ alg: 'RS256', typ: 'at+jwt', kid: 'local' }, { iss: config.issuer, aud: config.audience, sub: randomUUID(), ...(scope === undefined ? {} : { scope }), iat: now, exp: now + 600 },
      (data) => sign('sha256', Buffer.from(data), privateKey))}`
  })
  const note = '/notes/00000000-0000-4000-8000-000000000000'
  const routes: Array<[method: string, path: string, needs: string, body?: { text: string }]> = [
    ['GET', '/notes', 'notes:read'],
    ['POST', '/notes', 'notes:write', { text: 'x' }],
    ['DELETE', note, 'notes:write']
  ]
  for (const [method, path, needs, body] of routes) {
    const other = needs === 'notes:read' ? 'notes:write' : 'notes:read'
    // A token with the other scope, none, a name that only contains the needed one, or a list not split by spaces.
    for (const scope of [other, undefined, '', `x${needs}`, `${needs}x`, `${other},${needs}`]) {
      const res = await request(`${base}${path}`, { method, headers: withScope(scope), body })
      t.equal(res.status, 403, `${method} ${path} with scope ${JSON.stringify(scope)}`)
      t.equal(res.headers['www-authenticate'], `Bearer error="insufficient_scope", scope="${needs}"`, 'names the scope this route needs')
      t.match(res.json(), { type: 'about:blank', status: 403, detail: `the access token lacks the scope ${needs}` })
    }
    const allowed = await request(`${base}${path}`, { method, headers: withScope(`${other} ${needs}`), body })
    t.not(allowed.status, 403, `${method} ${path}: ${needs} among others is enough`)
    t.notOk('www-authenticate' in allowed.headers)
  }
})

t.test('an HTTP/1.1 request without a Host, with two, or with one that is not a host, is a problem+json 400, logged; an Expect other than 100-continue is ignored, not Node\'s bodiless 417', async (t) => {
  const before = logs.lines().length
  const hostless = await raw('GET /notes HTTP/1.1\r\nConnection: close\r\n\r\n')
  t.match(hostless, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(hostless, /\r\ncontent-type: application\/problem\+json/i)
  t.match(JSON.parse(hostless.split('\r\n\r\n')[1] ?? ''), { status: 400, detail: 'an HTTP/1.1 request must carry a Host header' })
  t.match(await raw('GET /healthz HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 200 /, 'HTTP/1.0 has no Host to require')
  const twice = await raw(`GET /notes HTTP/1.1\r\nHost: notes.test\r\nHost: elsewhere.test\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)
  t.match(twice, /^HTTP\/1\.1 400 Bad Request\r\n/, 'two Host lines: 400, not read as the first (RFC 9112 §3.2)')
  t.match(JSON.parse(twice.split('\r\n\r\n')[1] ?? ''), { status: 400, detail: 'the request has more than one Host header' })
  t.match(await raw('GET /healthz HTTP/1.0\r\nHost: notes.test\r\nhost: notes.test\r\n\r\n'), /^HTTP\/1\.1 400 /, 'on HTTP/1.0 too, in any case')
  // Node keeps the first Authorization and drops the rest: a valid token first was served, whatever came after it.
  const twoTokens = await raw(`GET /notes HTTP/1.1\r\nHost: notes.test\r\nAuthorization: Bearer ${token}\r\nauthorization: Bearer someone-else\r\nConnection: close\r\n\r\n`)
  t.match(twoTokens, /^HTTP\/1\.1 400 Bad Request\r\n/, 'two Authorization lines: 400, as Tessera answers')
  t.match(twoTokens, /\r\nwww-authenticate: Bearer error="invalid_request"\r\n/i, 'RFC 6750 §3.1\'s invalid_request')
  t.match(JSON.parse(twoTokens.split('\r\n\r\n')[1] ?? ''), { status: 400, detail: 'the request has more than one Authorization header' })
  for (const host of ['notes.test elsewhere.test', 'notes.test/x', 'user@notes.test', '[::1']) {
    const invalid = await raw(`GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    t.match(invalid, /^HTTP\/1\.1 400 /, `Host: ${host}: 400`)
    t.match(JSON.parse(invalid.split('\r\n\r\n')[1] ?? ''), { status: 400, detail: 'the Host header is not a host name or address with an optional port' })
  }
  for (const host of ['notes.test:8201', '127.0.0.1', '[::1]:8201', 'tessera_notes', '']) {
    t.match(await raw(`GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), /^HTTP\/1\.1 200 /, `Host: ${host}: served`)
  }
  const expecting = await raw(`GET /notes HTTP/1.1\r\nHost: notes.test\r\nExpect: foo\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)
  t.match(expecting, /^HTTP\/1\.1 200 /, 'served as if the Expect were absent')
  t.ok(logs.lines().slice(before).filter((l) => l.includes('"msg":"request"')).length >= 2, 'each with its log line')
})

t.test('a body field of another type is a 400, not coerced into a note: the schema says text is a string', async (t) => {
  // Fastify's Ajv coerces by default: 1, true and ["b"] were stored as "1", "true" and "b", and null read as "" (a 400 for being empty). Tessera coerces none.
  for (const text of [1, true, ['b'], null]) {
    const res = await request(`${base}/notes`, { method: 'POST', headers: bearer, body: { text } })
    t.equal(res.status, 400, JSON.stringify(text))
    t.match(res.json(), { type: 'about:blank', status: 400, detail: 'body/text must be string' })
  }
  t.notMatch(logs.text(), 'unexpected error')
})

t.test('a body that cannot be read says what is wrong with it: too large, empty, not JSON', async (t) => {
  // Each was "the request is malformed", a 413 too.
  const post = async (body: string, headers: Record<string, string> = {}): Promise<{ status: number, detail: unknown }> => {
    const res = await request(`${base}/notes`, { method: 'POST', headers: { ...bearer, 'content-type': 'application/json', ...headers }, body })
    return { status: res.status, detail: res.json<{ detail: unknown }>().detail }
  }
  t.same(await post(JSON.stringify({ text: 'a'.repeat(20_000) })), { status: 413, detail: 'the body is larger than 16384 bytes' })
  t.same(await post(''), { status: 400, detail: 'the JSON body is empty' })
  const notJson = 'the body is not valid JSON, or names __proto__ or constructor.prototype, which is refused'
  t.same(await post('{"text":'), { status: 400, detail: notJson })
  t.same(await post('{"__proto__":{"x":1},"text":"a"}'), { status: 400, detail: notJson }, 'prototype poisoning, which Fastify refuses with the same error')
  t.notMatch(logs.text(), 'unexpected error')
})

t.test('the asterisk-form target (OPTIONS *) names its target in the 404, and a problem with no path has no empty instance', async (t) => {
  // It answered "OPTIONS  does not exist" with "instance": "", an empty URI reference that names this document.
  const answer = await raw('OPTIONS * HTTP/1.1\r\nHost: notes.test\r\nConnection: close\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 404 /)
  t.match(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), { status: 404, detail: 'OPTIONS * does not exist', instance: '*' })
})

t.test('a body notes cannot read as sent is a 415 naming why, and nothing is stored: not UTF-8, another charset, a Content-Encoding, two Content-Type lines', async (t) => {
  // Each was stored, altered (U+FFFD for the bytes, UTF-8 for latin1) or as sent (gzip named, not applied), or read as its first Content-Type.
  const post = async (headers: string, body: Buffer): Promise<{ status: string, detail: unknown }> => {
    const socket = netConnect(Number(new URL(base).port), '127.0.0.1')
    socket.write(`POST /notes HTTP/1.1\r\nHost: notes.test\r\nAuthorization: Bearer ${token}\r\n${headers}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`)
    socket.write(body)
    let answer = ''
    socket.on('data', (chunk: Buffer) => { answer += chunk.toString() })
    await new Promise((resolve) => socket.on('close', resolve))
    return { status: answer.slice(9, answer.indexOf('\r\n')), detail: (JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { detail?: unknown }).detail }
  }
  const listed = async (): Promise<number> => (await request(`${base}/notes`, { headers: bearer })).json<{ notes: unknown[] }>().notes.length
  const before = await listed()
  const json = 'Content-Type: application/json\r\n'
  const cases: Array<[what: string, headers: string, body: Buffer, detail: string]> = [
    ['bytes that are not UTF-8', json, Buffer.concat([Buffer.from('{"text":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}')]), 'the body is not UTF-8; send it as UTF-8'],
    ['a latin1 charset', 'Content-Type: application/json; charset=latin1\r\n', Buffer.from('{"text":"caf\u00e9"}', 'latin1'), 'the body\'s charset is not UTF-8; send it as UTF-8'],
    ['a Content-Encoding', `${json}Content-Encoding: gzip\r\n`, Buffer.from('{"text":"plain"}'), 'the body has a Content-Encoding; send it uncompressed, without one'],
    ['two Content-Type lines', `${json}Content-Type: text/plain\r\n`, Buffer.from('{"text":"which"}'), 'the request has more than one Content-Type header']
  ]
  for (const [what, headers, body, detail] of cases) {
    t.same(await post(headers, body), { status: '415 Unsupported Media Type', detail }, what)
  }
  t.equal(await listed(), before, 'none of them stored')
  t.same(await post('Content-Type: application/json; charset="UTF-8"\r\nContent-Encoding: identity\r\n', Buffer.from('{"text":"caf\u00e9 \u2713"}')), { status: '201 Created', detail: undefined }, 'UTF-8 named, and identity, are read')
  const stored = (await request(`${base}/notes`, { headers: bearer })).json<{ notes: Array<{ text: string }> }>().notes
  t.ok(stored.some((note) => note.text === 'caf\u00e9 \u2713'), 'as sent')
})

/**
 * The id a request is known by, and the headers every answer carries, over
 * real HTTP: the gateway's X-Request-Id from a NOTES_TRUST_PROXY peer, notes'
 * own otherwise, one id in the header, the problem body and the log line.
 */
import { connect as netConnect, type AddressInfo } from 'node:net'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { memorySink, request, type MemorySink, type Reply } from '@tessera/testkit'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { connect } from '../../src/db.js'
import { createTestDatabase } from '../helpers.js'

const databaseUrl = await createTestDatabase(t)
const db = connect(databaseUrl)
t.teardown(async () => { await db.destroy() })

interface Served { base: string, port: number, logs: MemorySink }

/** notes on a port of its own with NOTES_TRUST_PROXY as given (unset when undefined); the test's requests come from 127.0.0.1. */
async function serve (trustProxy: string | undefined): Promise<Served> {
  const config = loadConfig({ DATABASE_URL: databaseUrl, ...(trustProxy === undefined ? {} : { NOTES_TRUST_PROXY: trustProxy }) })
  const logs = memorySink()
  const app = await buildApp(config, { db, logger: pino({ level: 'info' }, logs.stream), keys: async () => { throw new Error('no key needed') } })
  t.teardown(async () => { await app.close() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return { base: `http://127.0.0.1:${port}`, port, logs }
}

const gatewayFacing = await serve('10.0.0.0/8, 127.0.0.1')
const unset = await serve(undefined)
const elsewhere = await serve('10.0.0.0/8')

/** The request ids of the `request` log lines written for the request answered with `id`. */
const loggedIds = (served: Served, id: string): unknown[] => served.logs.lines().map((line) => JSON.parse(line) as Record<string, unknown>)
  .filter((line) => line.msg === 'request' && line.reqId === id).map((line) => line.reqId)

/** The header, the body's request_id and the log line name one id; returns it. */
function oneId (t: Test, served: Served, reply: Reply, what: string): string {
  const id = String(reply.headers['x-request-id'])
  t.equal(reply.json().request_id, id, `${what}: the body's request_id is the header's`)
  t.same(loggedIds(served, id), [id], `${what}: and its log line's`)
  return id
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

t.test('a NOTES_TRUST_PROXY peer\'s X-Request-Id is the request\'s id: in the header, the problem body and the log line', async (t) => {
  const refused = await request(`${gatewayFacing.base}/notes`, { headers: { 'x-request-id': '0123456789abcdef0123456789abcdef' } })
  t.equal(refused.status, 401)
  t.equal(oneId(t, gatewayFacing, refused, 'a 401'), '0123456789abcdef0123456789abcdef', 'the gateway\'s id, kept')
  const healthy = await request(`${gatewayFacing.base}/healthz`, { headers: { 'x-request-id': 'gw:42.a_b-c' } })
  t.same([healthy.status, healthy.headers['x-request-id']], [200, 'gw:42.a_b-c'], 'a 200 carries it too')
  for (const [given, why] of [['an id with spaces', 'a character Tessera takes in none'], ['x'.repeat(129), 'longer than 128']] as const) {
    const reply = await request(`${gatewayFacing.base}/notes`, { headers: { 'x-request-id': given } })
    t.match(oneId(t, gatewayFacing, reply, why), UUID, `${why}: notes makes its own`)
  }
  t.notOk(gatewayFacing.logs.text().includes('an id with spaces'), 'the refused one is logged nowhere')
})

t.test('from a peer not in NOTES_TRUST_PROXY (or with it unset) an X-Request-Id is not adopted: notes makes its own, the same in header, body and log', async (t) => {
  for (const [served, what] of [[unset, 'unset'], [elsewhere, '10.0.0.0/8']] as const) {
    const reply = await request(`${served.base}/notes`, { headers: { 'x-request-id': 'forged-by-client' } })
    t.equal(reply.status, 401)
    t.match(oneId(t, served, reply, what), UUID, `${what}: its own UUID`)
    t.notOk(served.logs.text().includes('forged-by-client'), `${what}: the client's is logged nowhere`)
    const healthy = await request(`${served.base}/healthz`)
    t.match(healthy.headers['x-request-id'], UUID, `${what}: a 200 carries an id too`)
  }
})

/** A request written on a raw connection, and everything the server sent before closing it. */
async function raw (port: number, text: string): Promise<string> {
  const socket = netConnect(port, '127.0.0.1')
  socket.write(text)
  let answer = ''
  socket.on('data', (chunk: Buffer) => { answer += chunk.toString() })
  await new Promise((resolve) => socket.on('close', resolve))
  return answer
}

t.test('what the router refuses and what Node\'s parser refuses carry the id too, the gateway\'s from a trusted peer', async (t) => {
  const unreadable = await request(`${gatewayFacing.base}/notes/%ZZ`, { method: 'DELETE', headers: { 'x-request-id': 'gw-router-1' } })
  t.equal(unreadable.status, 400)
  t.equal(oneId(t, gatewayFacing, unreadable, 'the router\'s 400'), 'gw-router-1')
  const tooLarge = (id: string): string => `GET /notes HTTP/1.1\r\nHost: notes.test\r\nX-Request-Id: ${id}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`
  const headerOf = (answer: string): string | undefined => /\r\nx-request-id: ([^\r]*)\r\n/i.exec(answer)?.[1]
  const bodyOf = (answer: string): Record<string, unknown> => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
  const unparsedIds = (served: Served): unknown[] => served.logs.lines().map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'unparsed request').map((line) => line.reqId)

  const trusted = await raw(gatewayFacing.port, tooLarge('gw-431'))
  t.match(trusted, /^HTTP\/1\.1 431 /)
  t.equal(headerOf(trusted), 'gw-431', 'a 431 from the gateway: its id in X-Request-Id')
  t.match(bodyOf(trusted), { status: 431, request_id: 'gw-431' }, 'and in the body')
  t.same(unparsedIds(gatewayFacing), ['gw-431'], 'and in the log line')

  const untrusted = await raw(unset.port, tooLarge('forged-431'))
  const own = headerOf(untrusted)
  t.match(own, UUID, 'from anyone else: notes\' own')
  t.equal(bodyOf(untrusted).request_id, own, 'the same in the body')
  t.same(unparsedIds(unset), [own], 'and in the log line')
})

t.test('every answer carries nosniff, Referrer-Policy and frame options: a 200, a 401, a 404, the router\'s 400 and the parser\'s 431', async (t) => {
  const expected = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'SAMEORIGIN' }
  for (const [path, method] of [['/healthz', 'GET'], ['/notes', 'GET'], ['/nowhere', 'GET'], ['/notes/%ZZ', 'DELETE']] as const) {
    const reply = await request(`${unset.base}${path}`, { method })
    t.same(Object.fromEntries(Object.keys(expected).map((name) => [name, reply.headers[name]])), expected, `${method} ${path}: ${reply.status}`)
  }
  const unparsed = await raw(unset.port, `GET /notes HTTP/1.1\r\nHost: notes.test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  for (const [name, value] of Object.entries(expected)) t.match(unparsed, new RegExp(`\\r\\n${name}: ${value}\\r\\n`, 'i'), `the parser's 431: ${name}`)
})

/**
 * notes over real HTTP against a real database, behind tokens signed with a
 * key of the test's own: the edges of its input a client can reach.
 */
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { Agent, get as httpGet } from 'node:http'
import type { AddressInfo } from 'node:net'
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

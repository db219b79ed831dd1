/**
 * notes over real HTTP against a real database, behind tokens signed with a
 * key of the test's own: the edges of its input a client can reach.
 */
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import type { AddressInfo } from 'node:net'
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

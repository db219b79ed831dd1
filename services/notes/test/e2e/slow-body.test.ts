/**
 * notes, like Tessera, answers or drops a request within 30 s of its start,
 * body included: a client trickling its body a byte at a time held its
 * connection as long as bytes kept coming. Slow by nature: Node checks its
 * connections every 30 s.
 */
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { trickleRequest } from '@tessera/testkit'
import { pino } from 'pino'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { connect, migrate } from '../../src/db.js'
import { createTestDatabase, forge } from '../helpers.js'

t.test('a body sent a byte every two seconds, behind a valid token, is answered 408, not held while bytes keep coming', async (t) => {
  const config = loadConfig({ DATABASE_URL: await createTestDatabase(t) })
  const db = connect(config.databaseUrl)
  t.teardown(async () => { await db.destroy() })
  await migrate(db)
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString()
  const app = await buildApp(config, { db, logger: pino({ level: 'silent' }), keys: async () => pem })
  t.teardown(async () => { await app.close() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const now = Math.floor(Date.now() / 1000)
  const token = forge({ alg: 'RS256', typ: 'at+jwt', kid: 'local' }, { iss: config.issuer, aud: config.audience, sub: randomUUID(), scope: 'notes:write', iat: now, exp: now + 300 },
    (data) => sign('sha256', Buffer.from(data), privateKey))
  const slow = await trickleRequest((app.server.address() as AddressInfo).port,
    `POST /notes HTTP/1.1\r\nHost: notes.test\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 16000\r\n\r\n{`,
    { everyMs: 2000, deadlineMs: 70_000 })
  t.ok(slow.closed, `cut off after ${slow.elapsedMs} ms`)
  t.match(slow.answer, /^HTTP\/1\.1 408 /, 'refused as too slow')
  t.match(slow.answer, /\r\nContent-Type: application\/problem\+json\r\n[^]*"detail":"the request did not arrive in time"/i, 'in the contract\'s shape')
})

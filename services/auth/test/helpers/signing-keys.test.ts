/**
 * The keys made ahead for the in-process apps (signing-keys.ts): an app signs
 * with one, stored and promoted as a generated key is, and no two apps of a
 * test file share one. Its own file, since the last test uses up the keys
 * this process was given.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import t from 'tap'
import type { Db } from '../../src/db/database.js'
import { buildTestApp } from './app.js'
import { testConnection } from './db.js'
import { storeKeyMadeAhead } from './signing-keys.js'

function keysMadeAhead (): string[] {
  const file = process.env.TESSERA_TEST_SIGNING_KEYS
  if (file === undefined) throw new Error('TESSERA_TEST_SIGNING_KEYS is unset: scripts/with-test-db.mjs makes the keys')
  return (JSON.parse(readFileSync(file, 'utf8')) as Array<{ kid: string }>).map((key) => key.kid)
}

/** The kids the apps of this file were given, in order. */
const taken: string[] = []

async function auditTypes (db: Db, kid: string): Promise<string[]> {
  return (await db.selectFrom('audit_events').select('type').where('kid', '=', kid).orderBy('id').execute()).map((r) => r.type)
}

t.test('each app signs with a key of its own made ahead, stored and promoted as a generated one', async (t) => {
  const made = keysMadeAhead()
  t.ok(made.length >= 2, 'the run made keys ahead')
  const first = await buildTestApp(t)
  const second = await buildTestApp(t)
  const kids = [first, second].map((ctx) => ctx.deps.keyring.signer?.kid ?? '')
  t.ok(made.includes(kids[0] ?? ''), 'the first app signs with a key made ahead')
  t.ok(made.includes(kids[1] ?? ''), 'so does the second')
  t.not(kids[0], kids[1], 'not the same one')
  taken.push(...kids)

  const rows = await first.deps.db.selectFrom('signing_keys').select(['kid', 'state', 'bits']).execute()
  t.same(rows, [{ kid: kids[0], state: 'current', bits: 2048 }], 'one key, signing')
  t.same(await auditTypes(first.deps.db, kids[0] ?? ''), ['key.created', 'key.promoted'], 'audited as a key made at first start')
  const jwks = (await first.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json() as { keys: Array<{ kid: string }> }
  t.same(jwks.keys.map((key) => key.kid), [kids[0]], 'and published')
})

t.test('a second app on the same database keeps the key the first one made', async (t) => {
  const env = { TESSERA_KEK: randomBytes(32).toString('base64url') }
  const first = await buildTestApp(t, env)
  const second = await buildTestApp(t, env, { connection: first.connection })
  t.equal(second.deps.keyring.signer?.kid, first.deps.keyring.signer?.kid)
  t.equal((await first.deps.db.selectFrom('signing_keys').select('kid').execute()).length, 1, 'no key stored beside it')
  taken.push(first.deps.keyring.signer?.kid ?? '')
})

t.test('every key is handed out once; past the last, and for another size, none', async (t) => {
  const { db } = await testConnection(t)
  const kek = randomBytes(32)
  t.equal(await storeKeyMadeAhead(db, kek, 3072, new Date()), undefined, 'no 3072-bit key was made: the app generates its own')
  const handedOut: string[] = []
  for (let kid = await storeKeyMadeAhead(db, kek, 2048, new Date()); kid !== undefined; kid = await storeKeyMadeAhead(db, kek, 2048, new Date())) {
    handedOut.push(kid)
    await db.deleteFrom('signing_keys').execute()
  }
  t.equal(taken.length, 3, 'the first tests took three')
  t.same([...taken, ...handedOut].sort(), keysMadeAhead().sort(), 'then the rest: each key made ahead once, none twice')
})

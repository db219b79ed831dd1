/**
 * Key operations generate their RSA key before taking the keys' lock
 * (keys/transitions.ts, withKeyMadeAhead), so two of them racing may both
 * generate one: the decision stays under the lock, and the key not needed is
 * dropped. Each racer on a connection of its own, on a real database.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t, { type Test } from 'tap'
import { connect } from '../../src/db/connect.js'
import type { Db } from '../../src/db/database.js'
import { advanceKeys } from '../../src/keys/advance.js'
import { ensureSigningKey, lockKeys } from '../../src/keys/ensure.js'
import { rotateKeys } from '../../src/keys/rotate.js'
import { testConfig } from '../helpers/app.js'
import { createTestDatabase, lockWaiters } from '../helpers/db.js'

const OPERATOR = { actor: 'operator' }

/** A database with one signing key, and `count` pools on it. */
async function racers (t: Test, count: number): Promise<{ url: string, dbs: Db[], kek: Buffer }> {
  const url = await createTestDatabase(t)
  const dbs = Array.from({ length: count }, () => {
    const connection = connect(url, 1)
    t.teardown(connection.close)
    return connection.db
  })
  const kek = randomBytes(32)
  await ensureSigningKey(dbs[0] as Db, kek, 2048, new Date())
  return { url, dbs, kek }
}

const keysCreated = async (db: Db): Promise<number> => (await db.selectFrom('audit_events').select('id').where('type', '=', 'key.created').execute()).length
const states = async (db: Db): Promise<string[]> => (await db.selectFrom('signing_keys').select('state').execute()).map((k) => k.state).sort()

t.test('two keys rotate at once, each with a key generated before the lock: one key stored, the other racer finds it pending', async (t) => {
  const { url, dbs: [a, b, holder], kek } = await racers(t, 3)
  if (a === undefined || b === undefined || holder === undefined) throw new Error('three pools')
  const making = { kek, bits: 2048 }
  const watcher = new pg.Client({ connectionString: url })
  await watcher.connect()
  t.teardown(async () => { await watcher.end() })
  let both: Promise<Array<Awaited<ReturnType<typeof rotateKeys>>>> | undefined
  // Both wait for the lock, so both looked before it, saw no next key and generated one.
  await holder.transaction().execute(async (trx) => {
    await lockKeys(trx)
    both = Promise.all([a, b].map(async (db) => await rotateKeys(db, making, { immediate: false, clock: () => new Date(), who: OPERATOR })))
    while (await lockWaiters(watcher) < 2) await new Promise((resolve) => setTimeout(resolve, 20))
  })
  const outcomes = await both ?? []
  const created = outcomes.flatMap((o) => o.created ?? [])
  t.equal(created.length, 1, 'one racer made the key')
  t.same(outcomes.flatMap((o) => o.pending ?? []), created, 'the other found that key pending')
  t.same(await states(a), ['current', 'next'])
  t.equal(await keysCreated(a), 2, 'the first key and the one rotation')
})

t.test('the schedule on two instances and a keys rotate, all at the rotation\'s due time: one key made', async (t) => {
  const { dbs, kek } = await racers(t, 3)
  const config = testConfig({ TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEY_PUBLISH_LEAD: '10s', TESSERA_KEY_ROTATION: '60s' })
  const making = { kek, bits: 2048 }
  const due = new Date(Date.now() + 3600_000)
  const [a, b, c] = dbs
  if (a === undefined || b === undefined || c === undefined) throw new Error('three pools')
  const [first, second, rotated] = await Promise.all([
    advanceKeys(a, making, config, due),
    advanceKeys(b, making, config, due),
    rotateKeys(c, making, { immediate: false, clock: () => due, who: OPERATOR })
  ])
  const created = [...(first ?? []), ...(second ?? [])].filter((x) => x.kind === 'created').map((x) => x.kid).concat(rotated.created ?? [])
  t.equal(created.length, 1, 'one of them made it')
  t.same(await states(a), ['current', 'next'])
  t.equal(await keysCreated(a), 2, 'the first key and the one rotation')
})

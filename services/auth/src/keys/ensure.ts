/**
 * First start: when no key signs, make one and promote it at once (nothing
 * can have cached a JWKS yet, so there is nobody to publish ahead to).
 * Serialized across instances by a transaction-scoped advisory lock.
 * @module
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.js'
import { KEYS_LOCK } from '../db/locks.js'
import { notifyKeysChanged, promoteKey, withKeyMadeAhead } from './transitions.js'

export async function lockKeys (db: Db): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${KEYS_LOCK})`.execute(db)
}

/** For timers: when another instance holds the lock it is doing this very work, so skip the turn. */
export async function tryLockKeys (db: Db): Promise<boolean> {
  const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_xact_lock(${KEYS_LOCK}) AS locked`.execute(db)
  return rows[0]?.locked === true
}

/** Returns the kid created, or undefined when a current key already existed. */
export async function ensureSigningKey (db: Db, kek: Buffer, bits: number, now: Date): Promise<string | undefined> {
  // Past the first start a key always signs (a transition that demotes or
  // revokes the signer promotes another in the same transaction), so a start
  // finds it without the keys' lock. The start's statements are bounded
  // (cluster/primary.ts), and another instance's key work may hold that lock
  // longer: a `keys revoke` ending a million sessions. The first key is
  // generated before the lock (withKeyMadeAhead), unless a `next` key waits.
  if (await db.selectFrom('signing_keys').select('kid').where('state', '=', 'current').executeTakeFirst() !== undefined) return undefined
  const waiting = await db.selectFrom('signing_keys').select('kid').where('state', '=', 'next').executeTakeFirst()
  return await withKeyMadeAhead(db, { kek, bits }, waiting === undefined, async (trx, maker) => {
    await lockKeys(trx)
    const current = await trx.selectFrom('signing_keys').select('kid').where('state', '=', 'current').executeTakeFirst()
    if (current !== undefined) return undefined
    const who = { actor: 'system' }
    const pending = await trx.selectFrom('signing_keys').select('kid').where('state', '=', 'next').executeTakeFirst()
    const kid = pending?.kid ?? await maker.create(trx, now, who)
    await promoteKey(trx, kid, now, who, pending === undefined ? 'first key' : 'no key was signing')
    await notifyKeysChanged(trx, `promoted ${kid}`)
    return kid
  })
}

/**
 * First start: when no key signs, make one and promote it at once (nothing
 * can have cached a JWKS yet, so there is nobody to publish ahead to).
 * Serialized across instances by a transaction-scoped advisory lock.
 * @module
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.js'
import { recordAudit } from '../audit/record.js'
import { encryptPrivateKey } from './kek.js'
import { generateSigningKey } from './generate.js'

/** Every key-state change takes this lock, so transitions from many instances never interleave. */
export const KEYS_LOCK = 0x7e55e4a1

export async function lockKeys (db: Db): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${KEYS_LOCK})`.execute(db)
}

/** Returns the kid created, or undefined when a current key already existed. */
export async function ensureSigningKey (db: Db, kek: Buffer, bits: number, now: Date): Promise<string | undefined> {
  return await db.transaction().execute(async (trx) => {
    await lockKeys(trx)
    const current = await trx.selectFrom('signing_keys').select('kid').where('state', '=', 'current').executeTakeFirst()
    if (current !== undefined) return undefined
    const key = await generateSigningKey(bits)
    await trx.insertInto('signing_keys').values({
      kid: key.kid,
      state: 'current',
      bits,
      public_jwk: JSON.stringify(key.publicJwk),
      private_key_enc: encryptPrivateKey(kek, key.kid, key.pkcs8),
      created_at: now,
      published_at: now,
      promoted_at: now
    }).execute()
    await recordAudit(trx, { type: 'key.created', actor: 'system', kid: key.kid, detail: { bits } })
    await recordAudit(trx, { type: 'key.promoted', actor: 'system', kid: key.kid, detail: { reason: 'first key' } })
    return key.kid
  })
}

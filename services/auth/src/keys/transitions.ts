/**
 * The building blocks every key operation shares: create a key, promote one,
 * tell the other instances. Each runs inside the caller's transaction, which
 * already holds KEYS_LOCK, and writes its own audit row.
 * @module
 */
import { sql } from 'kysely'
import type { Db, KeyState, SigningKeyRow } from '../db/database.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { decryptPrivateKey, encryptPrivateKey } from './kek.js'
import { generateSigningKey, type GeneratedKey } from './generate.js'

/** The Postgres channel every instance LISTENs on; the payload is only a hint for logs. */
export const KEYS_CHANNEL = 'tessera_keys'

export interface KeyMaking {
  kek: Buffer
  bits: number
  /**
   * Read once the key is generated, for its published_at. Generating an RSA
   * key can take a second or more on a busy machine, and the key is visible
   * only from then: stamping the time taken before would shorten the
   * publish-ahead lead by that much. Without it, the caller's `now` is used.
   */
  clock?: () => Date
}

export type Actor = RequestContext & { actor: string }

/** NOTIFY is delivered at commit, so listeners never reload before the change is visible. */
export async function notifyKeysChanged (db: Db, reason: string): Promise<void> {
  await sql`SELECT pg_notify(${KEYS_CHANNEL}, ${reason})`.execute(db)
}

export async function readKeys (db: Db): Promise<SigningKeyRow[]> {
  return await db.selectFrom('signing_keys').selectAll().orderBy('created_at').execute()
}

/**
 * Refuses to seal a new key under a KEK the stored keys were not sealed with
 * (an instance still running with the old KEK after `keys rewrap`): such a key
 * would stop every instance started with the new KEK.
 */
export async function assertKekMatches (db: Db, kek: Buffer): Promise<void> {
  const sealed = await db.selectFrom('signing_keys').select(['kid', 'private_key_enc'])
    .where('private_key_enc', 'is not', null).limit(1).executeTakeFirst()
  if (sealed?.private_key_enc != null) decryptPrivateKey(kek, sealed.kid, sealed.private_key_enc)
}

/** Generates a new key, stores it as `next` (published, not signing) and returns its kid. */
export async function createKey (db: Db, making: KeyMaking, now: Date, who: Actor): Promise<string> {
  await assertKekMatches(db, making.kek)
  const key = await generateSigningKey(making.bits)
  await storeKey(db, key, making.kek, making.clock?.() ?? now, who)
  return key.kid
}

/**
 * How a generated key is kept: a `next` row, its private half sealed under
 * the KEK, and its `key.created` audit row. Apart from createKey so that the
 * tests can store a key made ahead of time exactly as a generated one.
 */
export async function storeKey (db: Db, key: Omit<GeneratedKey, 'privateKey'>, kek: Buffer, published: Date, who: Actor): Promise<void> {
  await db.insertInto('signing_keys').values({
    kid: key.kid,
    state: 'next',
    bits: key.bits,
    public_jwk: JSON.stringify(key.publicJwk),
    private_key_enc: encryptPrivateKey(kek, key.kid, key.pkcs8),
    created_at: published,
    published_at: published
  }).execute()
  await recordAudit(db, { type: 'key.created', ...who, kid: key.kid, detail: { bits: key.bits } })
}

/** Demotes whatever signs to `previous`, then makes `kid` the signer (the unique index allows one current at a time). */
export async function promoteKey (db: Db, kid: string, now: Date, who: Actor, reason: string): Promise<string | undefined> {
  const demoted = await db.updateTable('signing_keys').set({ state: 'previous', demoted_at: now })
    .where('state', '=', 'current').returning('kid').executeTakeFirst()
  if (demoted !== undefined) await recordAudit(db, { type: 'key.demoted', ...who, kid: demoted.kid, detail: { successor: kid } })
  await db.updateTable('signing_keys').set({ state: 'current', promoted_at: now }).where('kid', '=', kid).execute()
  await recordAudit(db, { type: 'key.promoted', ...who, kid, detail: { reason, ...(demoted === undefined ? {} : { predecessor: demoted.kid }) } })
  return demoted?.kid
}

export const keyIn = (keys: SigningKeyRow[], state: KeyState): SigningKeyRow | undefined => keys.find((k) => k.state === state)

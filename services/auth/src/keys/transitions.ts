/**
 * The building blocks every key operation shares: create a key, promote one,
 * tell the other instances. Each runs inside the caller's transaction, which
 * already holds KEYS_LOCK, and writes its own audit row; the one slow step, an
 * RSA key's generation, happens before that transaction (withKeyMadeAhead).
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
   * Read as the key is stored, for its published_at. Generating an RSA key
   * can take a second or more on a busy machine (before the transaction), and
   * the key is visible only from its commit: a `now` the caller read before
   * the generation (the schedule's tick) would shorten the publish-ahead lead
   * by that much. Without it, the caller's `now` is used.
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

/** What a key operation's transaction stores a new key with: `create` stores it as `next` (published, not signing) and returns its kid. */
export interface KeyMaker {
  create: (db: Db, now: Date, who: Actor) => Promise<string>
}

/** Thrown inside the transaction when it needs a key none was generated for: rolls it back, for withKeyMadeAhead to generate one and run it again. */
class KeyNotMadeAhead extends Error {}

/**
 * Runs `work` in one transaction, handing it a KeyMaker whose key was
 * generated before the transaction began. Generating an RSA key takes up to
 * seconds (4096 bits): inside the transaction that holds KEYS_LOCK it held
 * every other instance's key work (the schedule, a first start) that long,
 * and left the connection idle in transaction, which a DBA's
 * idle_in_transaction_session_timeout ended ("Client has encountered a
 * connection error").
 *
 * `work` takes the lock and decides under it, from what it reads there,
 * whether a key is made; nothing outside the lock decides. `likely` (a read
 * without the lock) says whether to generate one first. When it said no and
 * `work` needs one after all, the transaction rolls back, a key is generated
 * and `work` runs again: at most twice, since one operation makes at most one
 * key. A key generated and not needed (another instance rotated meanwhile)
 * is dropped, never stored.
 */
export async function withKeyMadeAhead<T> (db: Db, making: KeyMaking, likely: boolean, work: (trx: Db, maker: KeyMaker) => Promise<T>): Promise<T> {
  const run = async (key: GeneratedKey | undefined): Promise<T> => await db.transaction().execute(async (trx) => await work(trx, {
    create: async (trx, now, who) => {
      // Before KeyNotMadeAhead: a stale KEK fails at once, not after a key generated for nothing.
      await assertKekMatches(trx, making.kek)
      if (key === undefined) throw new KeyNotMadeAhead()
      await storeKey(trx, key, making.kek, making.clock?.() ?? now, who)
      return key.kid
    }
  }))
  let key = likely ? await generateSigningKey(making.bits) : undefined
  try {
    try {
      return await run(key)
    } catch (err) {
      if (key !== undefined || !(err instanceof KeyNotMadeAhead)) throw err
    }
    key = await generateSigningKey(making.bits)
    return await run(key)
  } finally {
    key?.pkcs8.fill(0)
  }
}

/**
 * How a generated key is kept: a `next` row, its private half sealed under
 * the KEK, and its `key.created` audit row. Apart from withKeyMadeAhead so
 * that the tests can store a key made ahead of time exactly as a generated one.
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

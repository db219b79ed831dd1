// @ts-check
/**
 * `signing_keys.sessions_swept_at`: when the key schedule last ended the
 * sessions holding a token of this revoked key, the sweep that follows a
 * revoke (keys/advance.ts). `keys revoke` ends the sessions whose tokens it
 * can see; a login or a rotation still in flight then, or on an instance
 * that has not yet reloaded its keyring, can store a token of the key after
 * it (found in session 24: 6 to 12 sessions per revoke under steady logins).
 * Their refresh tokens are refused already, but the sessions stayed live.
 * Once every instance has reloaded (its own timer, TESSERA_KEY_CHECK_INTERVAL),
 * the schedule ends them, once, and records it here. Keys revoked before
 * this migration are swept once too: cheap, their tokens found by the BRIN
 * index on `kid`.
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`ALTER TABLE signing_keys ADD COLUMN sessions_swept_at timestamptz`.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`ALTER TABLE signing_keys DROP COLUMN sessions_swept_at`.execute(db)
}

// @ts-check
/**
 * A password login checks its client's row in the transaction that starts
 * the session, as it checks the user's. The client is authenticated before
 * the password is hashed; a `tessera clients disable` or `delete` that
 * committed during the hash ended every session it could see, and the login
 * then inserted one after it, which outlived the client (and, once a client
 * of the same id was created again, refreshed under it). Same arguments, same
 * result type: a build from before this migration, during a rolling
 * upgrade, reads the new NULL answer as a refusal too. The function's one
 * definition is migrations/0008's.
 * @module
 */
import { defineStartLogin } from './0008_login_round_trips.js'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await defineStartLogin(db, true)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await defineStartLogin(db, false)
}

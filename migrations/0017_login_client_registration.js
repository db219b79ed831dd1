// @ts-check
/**
 * A password login checks, in the transaction that starts its session, that
 * its client's row still allows what the login was granted: the password
 * grant, the scope and the resources, besides being there and enabled
 * (0013). The client is authenticated before the password is hashed; a
 * `clients delete` and `clients create` of the same id that both committed
 * during the hash left a row 0013's check passed, and the login started a
 * session of the old registration's scope and resources under the new one,
 * which refreshed it (a refresh token belongs to the client that got it).
 * Same arguments, same result (NULL: the client), so a statement prepared on
 * a live connection stays valid and a build from before reads the refusal as
 * 0013's. The function's one definition is migrations/0008's. Why:
 * docs/decisions.md, "A client registered again during a login".
 * @module
 */
import { defineStartLogin } from './0008_login_round_trips.js'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await defineStartLogin(db, 'registration')
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await defineStartLogin(db, true)
}

// @ts-check
/**
 * `users.imported_at`: when `tessera users import` created the user, null
 * for a user signed up or created in Tessera; `users.imported_as`: the
 * Django spelling the import read, when lower-casing changed it (`Dave` for
 * `dave`). A re-import then tells a name it imported before from this same
 * record (skipped) from a name someone else holds: a user signed up in
 * Tessera meanwhile, or another Django user's spelling of it. A DRF service
 * finds a token's user by name, so either would be the wrong Django user to
 * it (docs/migrating-from-simplejwt.md).
 *
 * Users already there are marked imported only on positive evidence: no
 * `user.created` audit row (every sign-up and `users create` wrote one, an
 * import never did) and a password hash that is still not Tessera's own (an
 * imported user who never logged in). Every other user counts as not
 * imported, so a re-import reports their names rather than skipping them:
 * a false report is a question for the operator, a false skip would hand a
 * Django user's name to whoever holds it.
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    ALTER TABLE users ADD COLUMN imported_at timestamptz, ADD COLUMN imported_as text;
    UPDATE users u SET imported_at = u.created_at
      WHERE u.password_hash NOT LIKE '$argon2id$%'
        AND NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.type = 'user.created' AND a.user_id = u.id);
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`ALTER TABLE users DROP COLUMN imported_at, DROP COLUMN imported_as`.execute(db)
}

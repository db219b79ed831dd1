// @ts-check
/**
 * A failed login whose username no user could have used to be keyed and
 * audited by that text as typed, which is sometimes a password typed in the
 * wrong field. Logins now key and audit every such text as `#invalid`
 * (grants/password.ts); this rewrites the rows written before, within the
 * audit retention, the same way, and drops their back-off rows (a login with
 * such a name never succeeds, so no one loses a block that protected them).
 * A name a user could have is `[a-z0-9._-]{3,64}` after normalisation, which
 * is how every other row is stored.
 *
 * There is no way back: `down` leaves the redacted rows as they are.
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    UPDATE audit_events SET username = '#invalid'
      WHERE type IN ('login.failed', 'login.backed_off') AND username !~ '^[a-z0-9._-]{3,64}$' AND username <> '#invalid';
    DELETE FROM login_throttle WHERE username !~ '^[a-z0-9._-]{3,64}$';
  `.execute(db)
}

/** Redacted text cannot be restored. */
export async function down () {}

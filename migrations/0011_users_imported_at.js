// @ts-check
/**
 * `users.imported_at`: when `tessera users import` created the user, null
 * for a user signed up or created in Tessera. A re-import then tells a name
 * it imported before (skipped) from a name someone else took in Tessera in
 * the meantime (reported): a DRF service finds a token's user by name, so
 * that someone would be the Django user to it (docs/migrating-from-simplejwt.md).
 * Users already there are judged by the audit trail: every sign-up and
 * `users create` wrote a `user.created` row, an import none, so a user
 * without one was imported (or created so long ago that its row is past the
 * audit retention, and is then taken for imported, as every user was before).
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    ALTER TABLE users ADD COLUMN imported_at timestamptz;
    UPDATE users u SET imported_at = u.created_at
      WHERE NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.type = 'user.created' AND a.user_id = u.id);
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`ALTER TABLE users DROP COLUMN imported_at`.execute(db)
}

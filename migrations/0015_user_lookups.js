// @ts-check
/**
 * Two lookups by user that read a whole table (found in session 25, at 2
 * million sessions and 5 million audit events; docs/performance.md,
 * "Production volumes (session 25)"):
 *
 *  - Deleting a user cascades to `sessions` (`DELETE … WHERE user_id = $1`,
 *    Postgres's own foreign-key statement), and the only index on user_id
 *    held the live sessions alone (`WHERE revoked_at IS NULL`): every
 *    `tessera users delete` read the whole table. `sessions_user` holds every
 *    session under (user_id, revoked_at), so the cascade finds a user's rows,
 *    and the live-session reads (GET /v1/sessions, ending a user's sessions,
 *    `users show`) still find only the live ones (`revoked_at IS NULL` is an
 *    index condition); it replaces `sessions_user_live`.
 *  - `tessera audit tail --user NAME` finds the events that recorded the name
 *    (and the ids that name went by) through `audit_events_username`.
 *
 * Each build takes a SHARE lock: writes to its table wait (logins and
 * refreshes on `sessions`, anything audited on `audit_events`) until it ends;
 * measured on 2 cores, 3.2 s over 1.8 million sessions and 5.6 s over 4.8
 * million audit events (operators.md, "Upgrading").
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    CREATE INDEX sessions_user ON sessions (user_id, revoked_at);
    DROP INDEX sessions_user_live;
    CREATE INDEX audit_events_username ON audit_events (username) WHERE username IS NOT NULL;
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`
    DROP INDEX audit_events_username;
    CREATE INDEX sessions_user_live ON sessions (user_id) WHERE revoked_at IS NULL;
    DROP INDEX sessions_user;
  `.execute(db)
}

// @ts-check
/**
 * Two lookups by user that read a whole table (found in session 25, at 2
 * million sessions and 5 million audit events; docs/performance-history.md,
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
 * `sessions` is locked ACCESS EXCLUSIVE first, by the drop, and stays so to
 * the commit: reads of it (the /v1 routes that check their session) wait as
 * well as writes. Built first under SHARE, then dropped, the lock grew from
 * SHARE to ACCESS EXCLUSIVE while a live refresh (which reads its session,
 * then slides it) held its read and waited on the SHARE: Postgres failed one
 * of them as a deadlock, the upgrade 2 tries in 3 under load. A lock taken
 * whole at once never grows, as 0006 and 0007 swap theirs. `audit_events`
 * comes after and gets SHARE (anything audited waits, reads do not): every
 * transaction that writes both writes `sessions` first. Measured on 2 cores,
 * 3.2 s over 1.8 million sessions and 5.6 s over 4.8 million audit events
 * (operators.md, "Upgrading").
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    DROP INDEX sessions_user_live;
    CREATE INDEX sessions_user ON sessions (user_id, revoked_at);
    CREATE INDEX audit_events_username ON audit_events (username) WHERE username IS NOT NULL;
  `.execute(db)
}

/**
 * In the same order, `sessions` then `audit_events`, each locked whole at once.
 * @param {import('kysely').Kysely<unknown>} db
 */
export async function down (db) {
  await sql`
    DROP INDEX sessions_user;
    CREATE INDEX sessions_user_live ON sessions (user_id) WHERE revoked_at IS NULL;
    DROP INDEX audit_events_username;
  `.execute(db)
}

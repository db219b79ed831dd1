// @ts-check
/**
 * The back-off's streak ends only once `max` has passed since its block
 * ended (or since its last failure, when it never reached a block). Before,
 * it ended `max` after the last failure, which is the very moment a capped
 * block ends: the first attempt after every capped block counted from one
 * again, with the threshold's free guesses each time (about fifteen every
 * half hour at the defaults instead of one per block). Why:
 * docs/decisions.md, "Back-off state lives in Postgres".
 * @module
 */
import { sql } from 'kysely'

/**
 * tessera_count_login_attempt (migrations/0008) with the streak judged stale
 * from `streakEnd`, an expression over the row `lt`.
 * @param {import('kysely').Kysely<unknown>} db
 * @param {string} streakEnd
 */
async function replaceCountLoginAttempt (db, streakEnd) {
  const restarts = `${streakEnd} < stale`
  await sql`
    CREATE OR REPLACE FUNCTION tessera_count_login_attempt (
      attempt_key text,
      at_time timestamptz,
      threshold integer,
      base_seconds double precision,
      max_seconds double precision
    ) RETURNS TABLE (
      refused boolean,
      retry_after integer,
      failures integer,
      blocked_until timestamptz
    )
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    DECLARE
      stale timestamptz := at_time - make_interval(secs => max_seconds);
      until timestamptz;
    BEGIN
      INSERT INTO login_throttle AS lt (username, failures, last_failed_at, blocked_until)
        VALUES (attempt_key, 1, at_time, CASE WHEN 1 >= threshold
          THEN at_time + make_interval(secs => LEAST(base_seconds * power(2, LEAST(1 - threshold, 40)), max_seconds)) END)
        ON CONFLICT (username) DO UPDATE SET
          failures = CASE WHEN ${sql.raw(restarts)} THEN 1 ELSE lt.failures + 1 END,
          last_failed_at = at_time,
          blocked_until = CASE WHEN (CASE WHEN ${sql.raw(restarts)} THEN 1 ELSE lt.failures + 1 END) >= threshold
            THEN at_time + make_interval(secs => LEAST(base_seconds * power(2,
              LEAST((CASE WHEN ${sql.raw(restarts)} THEN 1 ELSE lt.failures + 1 END) - threshold, 40)), max_seconds)) END
          WHERE lt.blocked_until IS NULL OR lt.blocked_until <= at_time
        RETURNING false, NULL::integer, lt.failures, lt.blocked_until
        INTO refused, retry_after, failures, blocked_until;
      IF FOUND THEN
        RETURN NEXT;
        RETURN;
      END IF;
      SELECT lt.blocked_until INTO until FROM login_throttle lt WHERE lt.username = attempt_key;
      refused := true;
      retry_after := GREATEST(1, ceil(extract(epoch FROM coalesce(until, at_time) - at_time)))::integer;
      failures := NULL;
      blocked_until := NULL;
      RETURN NEXT;
    END
    $fn$
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await replaceCountLoginAttempt(db, 'coalesce(lt.blocked_until, lt.last_failed_at)')
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await replaceCountLoginAttempt(db, 'lt.last_failed_at')
}

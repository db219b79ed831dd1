// @ts-check
/**
 * A password login in two round trips around the hash, besides the client
 * read (issue 12, login at the argon2 rate):
 *
 *  - tessera_count_login_attempt counts an attempt before any hashing, the
 *    upsert passwords/login-throttle.ts ran, and when the name is in back-off
 *    answers the whole seconds to wait in the same call (before: a second
 *    read). The password grant joins it with the user's row, so the count and
 *    the read are one statement.
 *  - tessera_start_login, after a verify that succeeded: in one transaction,
 *    checks (row lock) that the user's password and state are still those
 *    verified, storing the rehash if any, clears the name's failures, inserts
 *    the session, its first refresh token and the login.succeeded audit row.
 *    Before: BEGIN, five statements, COMMIT.
 *
 * Every time comes from the caller (the injected clock), as in the refresh
 * grant's function. Why: docs/decisions.md, "A login in two round trips".
 * @module
 */
import { sql } from 'kysely'

/**
 * Creates, or replaces, tessera_count_login_attempt with a streak judged
 * stale once `streakEnd` (an expression over the row `lt`) is older than the
 * maximum back-off. Here the last failure; migrations/0010 calls it again
 * with the end of the block, and with this one again on its way down.
 * @param {import('kysely').Kysely<unknown>} db
 * @param {string} streakEnd
 */
export async function defineCountLoginAttempt (db, streakEnd) {
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
      -- One upsert counts the attempt and refuses it while the name is
      -- blocked, so concurrent attempts each count once and a burst evaluates
      -- at most threshold guesses. The exponent is clamped against overflow.
      INSERT INTO login_throttle AS lt (username, failures, last_failed_at, blocked_until)
        VALUES (attempt_key, 1, at_time, CASE WHEN 1 >= threshold
          THEN at_time + make_interval(secs => LEAST(base_seconds * power(2, LEAST(1 - threshold, 40)), max_seconds)) END)
        ON CONFLICT (username) DO UPDATE SET
          failures = CASE WHEN ${sql.raw(streakEnd)} < stale THEN 1 ELSE lt.failures + 1 END,
          last_failed_at = at_time,
          blocked_until = CASE WHEN (CASE WHEN ${sql.raw(streakEnd)} < stale THEN 1 ELSE lt.failures + 1 END) >= threshold
            THEN at_time + make_interval(secs => LEAST(base_seconds * power(2,
              LEAST((CASE WHEN ${sql.raw(streakEnd)} < stale THEN 1 ELSE lt.failures + 1 END) - threshold, 40)), max_seconds)) END
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

/**
 * What migrations/0013 adds to tessera_start_login: the client's row, as the
 * user's. A client disabled or deleted while the password was hashed
 * (authenticated before it) ended every session it could see; this one must
 * not start after it. The row lock makes a disable or delete that starts now
 * wait, then end this session. NULL says it was the client (false, the user).
 * First, so that a refusal writes nothing (not even the rehash), and clients
 * before users, an order no other transaction takes the other way round.
 */
const CLIENT_CHECK = `
      PERFORM FROM clients c WHERE c.client_id = session_client AND c.disabled_at IS NULL FOR SHARE;
      IF NOT FOUND THEN
        RETURN NULL;
      END IF;`

/**
 * What migrations/0017 makes of it: the row must also still allow what the
 * login was granted (the password grant, its scope, its resources). A client
 * deleted and registered again under its id while the password was hashed
 * is another registration; without this the login started a session of the
 * old one's scope and resources under the new one, which refreshed it.
 */
const REGISTRATION_CHECK = `
      PERFORM FROM clients c WHERE c.client_id = session_client AND c.disabled_at IS NULL
        AND 'password' = ANY (c.grants) AND string_to_array(session_scope, ' ') <@ c.scopes AND session_resources <@ c.resources
        FOR SHARE;
      IF NOT FOUND THEN
        RETURN NULL;
      END IF;`

/**
 * Creates, or replaces, tessera_start_login; with `clientCheck`, as
 * migrations/0013 defines it, or with `'registration'`, as 0017 does.
 * @param {import('kysely').Kysely<unknown>} db
 * @param {boolean | 'registration'} clientCheck
 */
export async function defineStartLogin (db, clientCheck) {
  await sql`
    CREATE OR REPLACE FUNCTION tessera_start_login (
      verified_user uuid,
      verified_hash text,
      rehashed text,
      attempt_key text,
      new_session uuid,
      session_client text,
      session_scope text,
      session_resources text[],
      issued timestamptz,
      expires timestamptz,
      absolute_expires timestamptz,
      new_jti uuid,
      new_kid text,
      client_ip text,
      client_user_agent text,
      request text,
      audit_username text
    ) RETURNS boolean
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    BEGIN${sql.raw(clientCheck === 'registration' ? REGISTRATION_CHECK : clientCheck ? CLIENT_CHECK : '')}
      -- A password change or a disable that committed since the verify ended
      -- every session it could see; this one must not start after it. The row
      -- lock also makes a change that starts now wait, then end this session.
      IF rehashed IS NULL THEN
        PERFORM FROM users u WHERE u.id = verified_user AND u.password_hash = verified_hash AND u.disabled_at IS NULL FOR SHARE;
      ELSE
        UPDATE users u SET password_hash = rehashed
          WHERE u.id = verified_user AND u.password_hash = verified_hash AND u.disabled_at IS NULL;
      END IF;
      IF NOT FOUND THEN
        RETURN false;
      END IF;
      DELETE FROM login_throttle lt WHERE lt.username = attempt_key;
      INSERT INTO sessions (id, user_id, client_id, scope, resources, created_at, last_used_at, expires_at, absolute_expires_at, user_agent, ip)
        VALUES (new_session, verified_user, session_client, session_scope, session_resources, issued, issued, expires, absolute_expires, client_user_agent, client_ip);
      INSERT INTO refresh_tokens (jti, session_id, parent_jti, kid, issued_at, expires_at)
        VALUES (new_jti, new_session, NULL, new_kid, issued, expires);
      INSERT INTO audit_events (type, actor, user_id, username, session_id, ip, user_agent, request_id)
        VALUES ('login.succeeded', verified_user::text, verified_user, audit_username, new_session, client_ip, client_user_agent, request);
      RETURN true;
    END
    $fn$;
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await defineCountLoginAttempt(db, 'lt.last_failed_at')
  await defineStartLogin(db, false)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`
    DROP FUNCTION tessera_start_login;
    DROP FUNCTION tessera_count_login_attempt;
  `.execute(db)
}

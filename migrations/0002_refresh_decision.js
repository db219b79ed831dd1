// @ts-check
/**
 * The refresh decision as one SQL function, so a refresh is one round trip to
 * Postgres instead of five (BEGIN, lock, read, write, COMMIT). The function
 * locks the session row, checks it, and for an unused token marks it used,
 * inserts the successor and slides the session; for a used token inside the
 * grace window it returns the successor already stored. It writes nothing for
 * a refusal or a reuse: ending a family is rare and stays in the application
 * (sessions/end.ts), which writes every session ending and its audit row.
 *
 * PL/pgSQL, not one SQL statement: a VOLATILE function takes a new snapshot
 * for each statement, so once the session lock is granted the token read sees
 * what the lock's previous holder committed (the successor a racing tab must
 * receive). One statement keeps one snapshot from before the wait and cannot.
 * See docs/decisions.md, "The refresh decision in one round trip".
 * @module
 */
import { sql } from 'kysely'

/**
 * The function alone, also for 0005's down, which brings it back.
 * @param {import('kysely').Kysely<unknown>} db
 */
export async function createRefreshDecisionFunction (db) {
  await sql`
    CREATE FUNCTION tessera_refresh_decision (
      presented_jti uuid,
      presented_sid uuid,
      presented_sub text,
      at_time timestamptz,
      grace_seconds double precision,
      wanted_scope text[],
      new_jti uuid,
      new_kid text,
      ttl_seconds double precision,
      client_ip text,
      client_user_agent text
    ) RETURNS TABLE (
      decision text,
      successor_jti uuid,
      successor_kid text,
      successor_issued_at timestamptz,
      successor_expires_at timestamptz,
      session_client_id text,
      session_scope text
    )
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    DECLARE
      s record;
      t record;
      issued timestamptz := date_trunc('second', at_time);
      expires timestamptz;
    BEGIN
      SELECT ss.id, ss.user_id, ss.client_id, ss.scope, ss.expires_at, ss.absolute_expires_at, ss.revoked_at, u.disabled_at
        INTO s
        FROM sessions ss JOIN users u ON u.id = ss.user_id
        WHERE ss.id = presented_sid
        FOR UPDATE OF ss;
      IF NOT FOUND OR s.user_id::text <> presented_sub THEN
        decision := 'unknown session';
        RETURN NEXT;
        RETURN;
      END IF;
      IF s.revoked_at IS NOT NULL THEN
        decision := 'session revoked';
        RETURN NEXT;
        RETURN;
      END IF;
      IF s.disabled_at IS NOT NULL THEN
        decision := 'user disabled';
        RETURN NEXT;
        RETURN;
      END IF;
      IF s.expires_at <= at_time THEN
        decision := 'session expired';
        RETURN NEXT;
        RETURN;
      END IF;

      SELECT rt.jti, rt.used_at, rt.successor_jti, rt.session_id, k.state
        INTO t
        FROM refresh_tokens rt JOIN signing_keys k ON k.kid = rt.kid
        WHERE rt.jti = presented_jti;
      IF NOT FOUND OR t.session_id <> s.id THEN
        decision := 'unknown token';
        RETURN NEXT;
        RETURN;
      END IF;
      IF t.state = 'revoked' THEN
        decision := 'signing key revoked';
        RETURN NEXT;
        RETURN;
      END IF;
      -- A refresh may narrow the session's scope, never widen it; checked
      -- before any write so a refused request leaves the token usable.
      IF wanted_scope IS NOT NULL AND NOT wanted_scope <@ string_to_array(s.scope, ' ') THEN
        decision := 'scope widened';
        RETURN NEXT;
        RETURN;
      END IF;

      IF t.used_at IS NULL THEN
        expires := least(issued + make_interval(secs => ttl_seconds), date_trunc('second', s.absolute_expires_at));
        IF expires <= issued THEN
          decision := 'session at its absolute limit';
          RETURN NEXT;
          RETURN;
        END IF;
        UPDATE refresh_tokens SET used_at = at_time, successor_jti = new_jti WHERE jti = presented_jti;
        UPDATE sessions
          SET last_used_at = at_time,
              expires_at = expires,
              ip = coalesce(client_ip, sessions.ip),
              user_agent = coalesce(client_user_agent, sessions.user_agent)
          WHERE id = s.id;
        INSERT INTO refresh_tokens (jti, session_id, parent_jti, kid, issued_at, expires_at)
          VALUES (new_jti, s.id, presented_jti, new_kid, issued, expires);
        SELECT 'rotated', new_jti, new_kid, issued, expires, s.client_id, s.scope
          INTO decision, successor_jti, successor_kid, successor_issued_at, successor_expires_at, session_client_id, session_scope;
        RETURN NEXT;
        RETURN;
      END IF;

      IF at_time - t.used_at <= make_interval(secs => grace_seconds) AND t.successor_jti IS NOT NULL THEN
        SELECT 'grace', rt.jti, rt.kid, rt.issued_at, rt.expires_at, s.client_id, s.scope
          INTO decision, successor_jti, successor_kid, successor_issued_at, successor_expires_at, session_client_id, session_scope
          FROM refresh_tokens rt WHERE rt.jti = t.successor_jti;
        IF NOT FOUND THEN
          decision := 'successor gone';
          RETURN NEXT;
          RETURN;
        END IF;
        RETURN NEXT;
        RETURN;
      END IF;

      decision := 'reuse';
      RETURN NEXT;
    END
    $fn$
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await createRefreshDecisionFunction(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`DROP FUNCTION tessera_refresh_decision (uuid, uuid, text, timestamptz, double precision, text[], uuid, text, double precision, text, text)`.execute(db)
}

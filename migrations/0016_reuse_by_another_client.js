// @ts-check
/**
 * Reuse detection for a used refresh token presented by another client, or
 * asking for a scope or resource its session would refuse.
 * tessera_refresh_grant refused a session of another client before reading
 * its token, so a token used and past the grace window, presented by a
 * second client, was a plain `invalid_grant`: the session stayed live and no
 * reuse was recorded, in the very case reuse detection is for (a stolen
 * token, RFC 9700 §4.14.2). The function now answers `reuse by another
 * client` there, and grants/refresh.ts ends the session as for `reuse`.
 * The same gap on the owner's path: a used token past the window, presented
 * with a scope wider than its session's or a resource the session may not
 * ask for, was refused for its request's shape (`scope widened`, `resource
 * not allowed`) before reuse was judged, so it too left the session live and
 * recorded nothing. Reuse now precedes those refusals: the spent token's
 * presentation is the evidence, whatever the request asked for.
 * Everything else of 0006 stays: an unused token of another client, or one
 * used inside the grace window, is still refused with nothing written and no
 * successor, and so is an unused or in-window token asking for a wider scope
 * or a resource it may not have; the token is read only on refusals' paths,
 * so a refresh that rotates costs what it did. A resource the session
 * may not ask for is still refused before the session's own state, as 0004
 * did (a revoked, expired or unknown session so asked answers
 * `invalid_target`, as before).
 *
 * The function is replaced in place (OR REPLACE), as 0006 did, so a
 * statement prepared on a live connection stays valid; down restores 0006's
 * from the creator it exports. The why: docs/decisions.md, "Reuse by
 * another client".
 * @module
 */
import { sql } from 'kysely'
import { createRefreshWritesFunction } from './0006_refresh_writes.js'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    CREATE OR REPLACE FUNCTION tessera_refresh_grant (
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
      client_user_agent text,
      presenting_client text,
      presented_secret_digest bytea,
      wanted_resource text
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
      c record;
      s record;
      t record;
      issued timestamptz := date_trunc('second', at_time);
      expires timestamptz;
    BEGIN
      -- No presenting client: the caller vouches for it (tests of the decision alone).
      IF presenting_client IS NOT NULL THEN
        SELECT cl.confidential, cl.grants, cl.disabled_at,
            cl.secret_digest IS NOT NULL AND (presented_secret_digest = cl.secret_digest
              OR (cl.previous_secret_expires_at > at_time AND presented_secret_digest = cl.previous_secret_digest)) AS secret_ok
          INTO c
          FROM clients cl WHERE cl.client_id = presenting_client;
        IF NOT FOUND THEN
          decision := 'client: unknown client';
        ELSIF c.disabled_at IS NOT NULL THEN
          decision := 'client: client disabled';
        ELSIF presented_secret_digest IS NULL AND c.confidential THEN
          decision := 'client: no client authentication';
        ELSIF presented_secret_digest IS NOT NULL AND NOT c.confidential THEN
          decision := 'client: secret sent to a public client';
        ELSIF presented_secret_digest IS NOT NULL AND NOT coalesce(c.secret_ok, false) THEN
          decision := 'client: wrong secret';
        ELSIF NOT ('refresh_token' = ANY (c.grants)) THEN
          decision := 'unauthorized client';
        END IF;
        IF decision IS NOT NULL THEN
          RETURN NEXT;
          RETURN;
        END IF;
      END IF;

      SELECT ss.id, ss.user_id, ss.client_id, ss.scope, ss.resources, ss.expires_at, ss.absolute_expires_at, ss.revoked_at, u.disabled_at
        INTO s
        FROM sessions ss JOIN users u ON u.id = ss.user_id
        WHERE ss.id = presented_sid
        FOR UPDATE OF ss;
      -- Another client's session, or a resource this session may not ask for:
      -- refused before the session's own state, as 0004 did, with nothing
      -- written, so a misconfigured client cannot use up the owner's token. One
      -- exception, read on this path only: a token used and past the grace
      -- window, in a live session, is a stolen token presented again (RFC 9700
      -- §4.14.2), reuse whoever presents it and whatever it asks for, and the
      -- caller ends the session. Inside the window it stays a refusal: the
      -- successor goes to the owner alone, and only for what the session holds.
      IF FOUND AND presenting_client IS NOT NULL AND s.client_id <> presenting_client THEN
        decision := 'another client';
      ELSIF FOUND AND wanted_resource IS NOT NULL AND NOT (wanted_resource = ANY (s.resources)) THEN
        decision := 'resource not allowed';
      END IF;
      IF decision IS NOT NULL THEN
        IF s.user_id::text = presented_sub AND s.revoked_at IS NULL AND s.disabled_at IS NULL AND s.expires_at > at_time THEN
          SELECT rt.used_at, rt.successor_jti, rt.session_id, k.state
            INTO t
            FROM refresh_tokens rt JOIN signing_keys k ON k.kid = rt.kid
            WHERE rt.jti = presented_jti;
          IF FOUND AND t.session_id = s.id AND t.state <> 'revoked' AND t.used_at IS NOT NULL
              AND NOT (at_time - t.used_at <= make_interval(secs => grace_seconds) AND t.successor_jti IS NOT NULL) THEN
            IF decision = 'another client' THEN
              decision := 'reuse by another client';
            ELSE
              decision := 'reuse';
            END IF;
          END IF;
        END IF;
        RETURN NEXT;
        RETURN;
      END IF;
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

      -- The rotation itself: one statement marks the token used (only if it is
      -- this session's, unused, and its key is known and not revoked), slides
      -- the session and inserts the successor. Any other case falls through to
      -- the reads below, which name the decision.
      expires := least(issued + make_interval(secs => ttl_seconds), date_trunc('second', s.absolute_expires_at));
      IF expires > issued AND (wanted_scope IS NULL OR wanted_scope <@ string_to_array(s.scope, ' ')) THEN
        WITH used AS (
          UPDATE refresh_tokens rt SET used_at = at_time, successor_jti = new_jti
            WHERE rt.jti = presented_jti AND rt.session_id = s.id AND rt.used_at IS NULL
              AND EXISTS (SELECT FROM signing_keys k WHERE k.kid = rt.kid AND k.state <> 'revoked')
            RETURNING rt.jti
        ), slid AS (
          UPDATE sessions
            SET last_used_at = at_time,
                expires_at = expires,
                ip = coalesce(client_ip, sessions.ip),
                user_agent = coalesce(client_user_agent, sessions.user_agent)
            WHERE id = s.id AND EXISTS (SELECT FROM used)
        )
        INSERT INTO refresh_tokens (jti, session_id, parent_jti, kid, issued_at, expires_at)
          SELECT new_jti, s.id, used.jti, new_kid, issued, expires FROM used;
        IF FOUND THEN
          decision := 'rotated';
          successor_jti := new_jti;
          successor_kid := new_kid;
          successor_issued_at := issued;
          successor_expires_at := expires;
          session_client_id := s.client_id;
          session_scope := s.scope;
          RETURN NEXT;
          RETURN;
        END IF;
      END IF;

      SELECT rt.used_at, rt.successor_jti, rt.session_id, k.state
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
      -- Used and past the window: reuse, before the scope is judged, so a spent
      -- token presented again is evidence whatever scope it asks for.
      IF t.used_at IS NOT NULL AND NOT (at_time - t.used_at <= make_interval(secs => grace_seconds) AND t.successor_jti IS NOT NULL) THEN
        decision := 'reuse';
        RETURN NEXT;
        RETURN;
      END IF;
      IF wanted_scope IS NOT NULL AND NOT wanted_scope <@ string_to_array(s.scope, ' ') THEN
        decision := 'scope widened';
        RETURN NEXT;
        RETURN;
      END IF;
      -- Unused, of this session, its key good and the scope not widened: only
      -- the absolute limit kept the statement above from rotating it.
      IF t.used_at IS NULL THEN
        decision := 'session at its absolute limit';
        RETURN NEXT;
        RETURN;
      END IF;
      -- Used inside the window: the successor it already has, for racing tabs.
      SELECT 'grace', rt.jti, rt.kid, rt.issued_at, rt.expires_at, s.client_id, s.scope
        INTO decision, successor_jti, successor_kid, successor_issued_at, successor_expires_at, session_client_id, session_scope
        FROM refresh_tokens rt WHERE rt.jti = t.successor_jti;
      IF NOT FOUND THEN
        decision := 'successor gone';
      END IF;
      RETURN NEXT;
    END
    $fn$;
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await createRefreshWritesFunction(db)
}

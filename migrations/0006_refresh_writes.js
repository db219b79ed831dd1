// @ts-check
/**
 * Postgres's share of a refresh, cut (issue 12). tessera_refresh_grant keeps
 * its signature and every decision of 0005; what changes is how a rotation
 * is written:
 *
 *  - one statement marks the token used (`UPDATE … WHERE used_at IS NULL`,
 *    its session's, its key known and not revoked), slides the session and
 *    inserts the successor. The token is no longer read first: the reads
 *    that name a refusal run only when that statement changed nothing.
 *  - the session's slide is a HOT update: `sessions_expires_at` becomes a
 *    BRIN index (Postgres 16 and later keep an update HOT when only
 *    summarizing indexes cover the changed columns; cleanup still finds
 *    expired sessions through it), and sessions and refresh_tokens leave room
 *    on each page (fillfactor) for the new row versions of a slide and of
 *    marking a token used.
 *
 * The function is replaced in place (OR REPLACE), so a statement prepared on
 * a live connection (db/named-statements.ts) stays valid. Measurements and
 * the why: docs/decisions.md, "Postgres's share of a refresh".
 * @module
 */
import { sql } from 'kysely'
import { createRefreshGrantFunction } from './0005_refresh_grant.js'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await createRefreshWritesFunction(db)
  await sql`
    DROP INDEX sessions_expires_at;
    CREATE INDEX sessions_expires_at ON sessions USING brin (expires_at);
    ALTER TABLE sessions SET (fillfactor = 80);
    ALTER TABLE refresh_tokens SET (fillfactor = 80);
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await createRefreshGrantFunction(db)
  await sql`
    DROP INDEX sessions_expires_at;
    CREATE INDEX sessions_expires_at ON sessions (expires_at);
    ALTER TABLE sessions RESET (fillfactor);
    ALTER TABLE refresh_tokens RESET (fillfactor);
  `.execute(db)
}

/**
 * Creates (or, from 0016's down, restores) this migration's
 * tessera_refresh_grant, in place.
 * @param {import('kysely').Kysely<unknown>} db
 */
export async function createRefreshWritesFunction (db) {
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
      -- Another client's session or resource: refused before the session's own state, as 0004 did.
      IF FOUND AND presenting_client IS NOT NULL AND s.client_id <> presenting_client THEN
        decision := 'another client';
        RETURN NEXT;
        RETURN;
      END IF;
      IF FOUND AND wanted_resource IS NOT NULL AND NOT (wanted_resource = ANY (s.resources)) THEN
        decision := 'resource not allowed';
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
      IF at_time - t.used_at <= make_interval(secs => grace_seconds) AND t.successor_jti IS NOT NULL THEN
        SELECT 'grace', rt.jti, rt.kid, rt.issued_at, rt.expires_at, s.client_id, s.scope
          INTO decision, successor_jti, successor_kid, successor_issued_at, successor_expires_at, session_client_id, session_scope
          FROM refresh_tokens rt WHERE rt.jti = t.successor_jti;
        IF NOT FOUND THEN
          decision := 'successor gone';
        END IF;
        RETURN NEXT;
        RETURN;
      END IF;

      decision := 'reuse';
      RETURN NEXT;
    END
    $fn$;
  `.execute(db)
}

// @ts-check
/**
 * The whole refresh grant's database work as one PL/pgSQL function,
 * tessera_refresh_grant: client authentication (the digest of the presented
 * secret against the current and the still-live previous digest, disabled,
 * a secret sent to a public client, registered for refresh_token), the
 * session's client and resource, and then the decision exactly as 0002's
 * tessera_refresh_decision made it. One read of the client, one locked read
 * of the session, no nested call: a refresh is one round trip to Postgres,
 * client included. It replaces 0002's and 0004's functions, which nothing
 * calls any more; down brings them back.
 *
 * It also drops what each refresh paid for and no query needs: the foreign
 * keys of refresh_tokens.parent_jti and refresh_tokens.kid, and the index on
 * parent_jti.
 *
 * A refusal writes nothing. A failed client authentication answers
 * `client: <reason>` and the application writes its audit row (a second
 * statement, on that failure path only). Digest equality in SQL and the
 * write-path changes below: docs/decisions.md, "The refresh grant in one
 * round trip, client included".
 * @module
 */
import { sql } from 'kysely'
import { createRefreshDecisionFunction } from './0002_refresh_decision.js'
import { createClientRefreshDecisionFunction } from './0004_clients.js'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await createRefreshGrantFunction(db)
  await sql`
    DROP FUNCTION tessera_client_refresh_decision (uuid, uuid, text, timestamptz, double precision, text[], uuid, text, double precision, text, text, text, text);
    DROP FUNCTION tessera_refresh_decision (uuid, uuid, text, timestamptz, double precision, text[], uuid, text, double precision, text, text);

    -- Each refresh inserted a token through two foreign-key checks and one
    -- index no query reads; what each was for, and why it is safe without:
    -- docs/decisions.md, "Cheaper refresh writes".
    ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_parent_jti_fkey;
    DROP INDEX refresh_tokens_parent;
    ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_kid_fkey;
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`
    DROP FUNCTION tessera_refresh_grant (uuid, uuid, text, timestamptz, double precision, text[], uuid, text, double precision, text, text, text, bytea, text);
    DELETE FROM refresh_tokens rt WHERE NOT EXISTS (SELECT 1 FROM signing_keys k WHERE k.kid = rt.kid);
    ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_kid_fkey FOREIGN KEY (kid) REFERENCES signing_keys (kid) ON DELETE CASCADE;
    UPDATE refresh_tokens rt SET parent_jti = NULL
      WHERE parent_jti IS NOT NULL AND NOT EXISTS (SELECT 1 FROM refresh_tokens p WHERE p.jti = rt.parent_jti);
    ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_parent_jti_fkey FOREIGN KEY (parent_jti) REFERENCES refresh_tokens (jti) ON DELETE SET NULL;
    CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_jti);
  `.execute(db)
  await createRefreshDecisionFunction(db)
  await createClientRefreshDecisionFunction(db)
}

/**
 * Creates (or, from 0006's down, restores) this migration's
 * tessera_refresh_grant. OR REPLACE keeps the function's identity, so a
 * statement prepared on a connection stays valid across the swap.
 * @param {import('kysely').Kysely<unknown>} db
 */
export async function createRefreshGrantFunction (db) {
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

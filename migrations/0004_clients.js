// @ts-check
/**
 * Registered clients (DESIGN.md, "Clients and resources"). A confidential
 * client has a secret digest; a rotated-out digest keeps working until its
 * grace ends. Sessions remember the resources their refresh tokens may ask
 * for, and a disabled or deleted client ends its sessions with a reason of
 * its own. sessions.client_id has no foreign key: ended sessions outlive the
 * client they named, for the record.
 *
 * tessera_client_refresh_decision wraps 0002's tessera_refresh_decision with
 * the two checks a refresh needs before anything is written: the presenting
 * client is the session's, and the resource asked for is one of the session's.
 * Still one round trip; a refused refresh leaves its token usable.
 * @module
 */
import { sql } from 'kysely'

/**
 * The function alone, also for 0005's down, which brings it back.
 * @param {import('kysely').Kysely<unknown>} db
 */
export async function createClientRefreshDecisionFunction (db) {
  await sql`
    CREATE FUNCTION tessera_client_refresh_decision (
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
    DECLARE
      s record;
    BEGIN
      -- A session's client and resources never change, so no lock is needed
      -- to read them; tessera_refresh_decision takes the session's lock.
      SELECT ss.client_id, ss.resources INTO s FROM sessions ss WHERE ss.id = presented_sid;
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
      RETURN QUERY SELECT * FROM tessera_refresh_decision(presented_jti, presented_sid, presented_sub, at_time, grace_seconds,
        wanted_scope, new_jti, new_kid, ttl_seconds, client_ip, client_user_agent);
    END
    $fn$;
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    CREATE TABLE clients (
      client_id text PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9._-]{1,64}$'),
      confidential boolean NOT NULL,
      grants text[] NOT NULL
        CHECK (grants <@ ARRAY['password', 'refresh_token', 'client_credentials']::text[] AND cardinality(grants) > 0),
      scopes text[] NOT NULL,
      resources text[] NOT NULL,
      secret_digest bytea CHECK (octet_length(secret_digest) = 32),
      previous_secret_digest bytea CHECK (octet_length(previous_secret_digest) = 32),
      previous_secret_expires_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      secret_rotated_at timestamptz,
      disabled_at timestamptz,
      CHECK (confidential = (secret_digest IS NOT NULL)),
      CHECK (confidential OR NOT ('client_credentials' = ANY (grants))),
      CHECK ((previous_secret_digest IS NULL) = (previous_secret_expires_at IS NULL))
    );

    ALTER TABLE sessions ADD COLUMN resources text[] NOT NULL DEFAULT '{}';
    ALTER TABLE sessions DROP CONSTRAINT sessions_revoke_reason_check;
    ALTER TABLE sessions ADD CONSTRAINT sessions_revoke_reason_check CHECK (revoke_reason IN
      ('logout', 'logout_all', 'revoke', 'reuse', 'password_change', 'user_disabled', 'key_revoked', 'session_deleted',
       'client_disabled', 'client_deleted'));
    CREATE INDEX sessions_client_live ON sessions (client_id) WHERE revoked_at IS NULL;
  `.execute(db)
  await createClientRefreshDecisionFunction(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`
    DROP FUNCTION tessera_client_refresh_decision (uuid, uuid, text, timestamptz, double precision, text[], uuid, text, double precision, text, text, text, text);
    DROP INDEX sessions_client_live;
    UPDATE sessions SET revoke_reason = 'revoke' WHERE revoke_reason IN ('client_disabled', 'client_deleted');
    ALTER TABLE sessions DROP CONSTRAINT sessions_revoke_reason_check;
    ALTER TABLE sessions ADD CONSTRAINT sessions_revoke_reason_check CHECK (revoke_reason IN
      ('logout', 'logout_all', 'revoke', 'reuse', 'password_change', 'user_disabled', 'key_revoked', 'session_deleted'));
    ALTER TABLE sessions DROP COLUMN resources;
    DROP TABLE clients;
  `.execute(db)
}

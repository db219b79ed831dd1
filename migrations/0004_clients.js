// @ts-check
/**
 * Registered clients (DESIGN.md, "Clients and resources"). A confidential
 * client has a secret digest; a rotated-out digest keeps working until its
 * grace ends. Sessions remember the resources their refresh tokens may ask
 * for, and a disabled or deleted client ends its sessions with a reason of
 * its own. sessions.client_id has no foreign key: ended sessions outlive the
 * client they named, for the record.
 * @module
 */
import { sql } from 'kysely'

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
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`
    DROP INDEX sessions_client_live;
    UPDATE sessions SET revoke_reason = 'revoke' WHERE revoke_reason IN ('client_disabled', 'client_deleted');
    ALTER TABLE sessions DROP CONSTRAINT sessions_revoke_reason_check;
    ALTER TABLE sessions ADD CONSTRAINT sessions_revoke_reason_check CHECK (revoke_reason IN
      ('logout', 'logout_all', 'revoke', 'reuse', 'password_change', 'user_disabled', 'key_revoked', 'session_deleted'));
    ALTER TABLE sessions DROP COLUMN resources;
    DROP TABLE clients;
  `.execute(db)
}

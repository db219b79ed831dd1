// @ts-check
/**
 * The whole data model of DESIGN.md's Data section. Constraints live here, not
 * only in code: states are CHECKed, at most one key signs (a partial unique
 * index), and deleting a session removes its refresh tokens.
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    CREATE TABLE users (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      username text NOT NULL UNIQUE
        CHECK (char_length(username) BETWEEN 3 AND 64 AND username ~ '^[a-z0-9._-]+$'),
      password_hash text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      password_changed_at timestamptz NOT NULL DEFAULT now(),
      disabled_at timestamptz
    );

    CREATE TABLE signing_keys (
      kid text PRIMARY KEY,
      state text NOT NULL CHECK (state IN ('next', 'current', 'previous', 'retired', 'revoked')),
      alg text NOT NULL DEFAULT 'RS256' CHECK (alg = 'RS256'),
      bits integer NOT NULL CHECK (bits IN (2048, 3072, 4096)),
      public_jwk jsonb NOT NULL,
      private_key_enc bytea,
      created_at timestamptz NOT NULL DEFAULT now(),
      published_at timestamptz NOT NULL DEFAULT now(),
      promoted_at timestamptz,
      demoted_at timestamptz,
      unpublished_at timestamptz,
      private_erased_at timestamptz,
      revoked_at timestamptz,
      CHECK (state <> 'current' OR private_key_enc IS NOT NULL),
      CHECK (state <> 'revoked' OR revoked_at IS NOT NULL),
      CHECK (NOT public_jwk ? 'd')
    );
    CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state = 'current';
    CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

    CREATE TABLE sessions (
      id uuid PRIMARY KEY,
      user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      client_id text NOT NULL,
      scope text NOT NULL,
      created_at timestamptz NOT NULL,
      last_used_at timestamptz NOT NULL,
      expires_at timestamptz NOT NULL,
      absolute_expires_at timestamptz NOT NULL,
      revoked_at timestamptz,
      revoke_reason text CHECK (revoke_reason IN
        ('logout', 'logout_all', 'revoke', 'reuse', 'password_change', 'user_disabled', 'key_revoked', 'session_deleted')),
      user_agent text,
      ip text,
      CHECK (expires_at <= absolute_expires_at),
      CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
    );
    CREATE INDEX sessions_user_live ON sessions (user_id) WHERE revoked_at IS NULL;
    CREATE INDEX sessions_expires_at ON sessions (expires_at);
    CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

    CREATE TABLE refresh_tokens (
      jti uuid PRIMARY KEY,
      session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
      parent_jti uuid REFERENCES refresh_tokens (jti) ON DELETE SET NULL,
      kid text NOT NULL REFERENCES signing_keys (kid) ON DELETE CASCADE,
      issued_at timestamptz NOT NULL,
      expires_at timestamptz NOT NULL,
      used_at timestamptz,
      successor_jti uuid,
      CHECK (expires_at > issued_at),
      CHECK ((used_at IS NULL) = (successor_jti IS NULL))
    );
    CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
    CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_jti);
    CREATE INDEX refresh_tokens_kid ON refresh_tokens (kid);
    CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

    CREATE TABLE audit_events (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      occurred_at timestamptz NOT NULL DEFAULT now(),
      type text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
      actor text,
      user_id uuid,
      username text,
      session_id uuid,
      kid text,
      ip text,
      user_agent text,
      request_id text,
      detail jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);
    CREATE INDEX audit_events_user ON audit_events (user_id, occurred_at) WHERE user_id IS NOT NULL;

    CREATE TABLE login_throttle (
      username text PRIMARY KEY,
      failures integer NOT NULL CHECK (failures >= 0),
      last_failed_at timestamptz NOT NULL,
      blocked_until timestamptz
    );
    CREATE INDEX login_throttle_last_failed_at ON login_throttle (last_failed_at);
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`
    DROP TABLE login_throttle;
    DROP TABLE audit_events;
    DROP TABLE refresh_tokens;
    DROP TABLE sessions;
    DROP TABLE signing_keys;
    DROP TABLE users;
  `.execute(db)
}

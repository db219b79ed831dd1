// @ts-check
/**
 * tessera_refresh_grants: several refresh decisions in one call and one
 * transaction, each exactly tessera_refresh_grant's (0016, called as is), in
 * the order given. The arrays are parallel, one element per decision, the
 * grace and the lifetime one for all; a wanted scope is its space-separated
 * text (NULL: keep the session's). Each row names its decision's place in
 * the arrays (1-based).
 *
 * A decision whose session another transaction holds (a refresh of the same
 * session elsewhere, a logout, a cleanup batch) is not waited for: it
 * answers `session locked`, having written nothing, and the caller decides
 * it alone, waiting for the lock as before. So a call never waits on a
 * session's lock and never holds one while it does: no call stalls behind
 * one busy session, and no two calls can deadlock. A session that does not
 * exist answers the same (SKIP LOCKED finds nothing either way); its lone
 * call says `unknown session`.
 *
 * Why: docs/decisions.md, "Refreshes decided together".
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    CREATE FUNCTION tessera_refresh_grants (
      presented_jtis uuid[],
      presented_sids uuid[],
      presented_subs text[],
      at_times timestamptz[],
      grace_seconds double precision,
      wanted_scopes text[],
      new_jtis uuid[],
      new_kids text[],
      ttl_seconds double precision,
      client_ips text[],
      client_user_agents text[],
      presenting_clients text[],
      presented_secret_digests bytea[],
      wanted_resources text[]
    ) RETURNS TABLE (
      item integer,
      decision text,
      successor_jti uuid,
      successor_kid text,
      successor_issued_at timestamptz,
      successor_expires_at timestamptz,
      session_client_id text,
      session_scope text
    )
    LANGUAGE plpgsql VOLATILE AS $fn$
    BEGIN
      FOR i IN 1 .. coalesce(array_length(presented_sids, 1), 0) LOOP
        PERFORM FROM sessions ss WHERE ss.id = presented_sids[i] FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
          item := i;
          decision := 'session locked';
          RETURN NEXT;
          CONTINUE;
        END IF;
        RETURN QUERY SELECT i, g.* FROM tessera_refresh_grant(
          presented_jtis[i], presented_sids[i], presented_subs[i], at_times[i], grace_seconds,
          string_to_array(wanted_scopes[i], ' '), new_jtis[i], new_kids[i], ttl_seconds,
          client_ips[i], client_user_agents[i], presenting_clients[i], presented_secret_digests[i],
          wanted_resources[i]) g;
      END LOOP;
    END
    $fn$;
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`DROP FUNCTION tessera_refresh_grants`.execute(db)
}

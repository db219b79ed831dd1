// @ts-check
/**
 * Every change to a registered client is notified on tessera_clients with
 * its client_id ('*' for a truncate), in the changing transaction, so it is
 * heard at its commit and never before. An instance's workers keep client
 * rows in memory only while they hear these (clients/cache.ts): a trigger
 * rather than a NOTIFY in each command, so a change made any way (a future
 * command, an operator's SQL) reaches them too. Why: docs/decisions.md,
 * "Client rows in the workers' memory".
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    CREATE FUNCTION tessera_notify_client_change () RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    BEGIN
      IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('tessera_clients', '*');
        RETURN NULL;
      END IF;
      IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('tessera_clients', OLD.client_id);
      END IF;
      IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('tessera_clients', NEW.client_id);
      END IF;
      RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER clients_notify_change AFTER INSERT OR UPDATE OR DELETE ON clients
      FOR EACH ROW EXECUTE FUNCTION tessera_notify_client_change();
    CREATE TRIGGER clients_notify_truncate AFTER TRUNCATE ON clients
      FOR EACH STATEMENT EXECUTE FUNCTION tessera_notify_client_change();
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`
    DROP TRIGGER clients_notify_truncate ON clients;
    DROP TRIGGER clients_notify_change ON clients;
    DROP FUNCTION tessera_notify_client_change ();
  `.execute(db)
}

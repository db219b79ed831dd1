/**
 * Least privilege in Postgres (docs/operators.md, "Database roles"). Run once
 * by an operator with a superuser connection (`tessera db roles`); running it
 * again changes the passwords and re-applies the grants.
 * - owner: owns the database, the public schema and every Tessera table and
 *   function; the migrations run as it.
 * - runtime: Tessera's server and jobs; rows only (SELECT, INSERT, UPDATE,
 *   DELETE on Tessera's tables), no DDL.
 * - notes: its own schema `notes` and nothing of Tessera's: it cannot read
 *   password hashes nor write a key into signing_keys for verifiers to trust.
 * @module
 */
import { sql, type RawBuilder } from 'kysely'
import type { Db } from './database.js'
import { TesseraError } from '../errors.js'
import { scramVerifier } from './scram.js'

export interface RoleLogin { name: string, password: string }
export interface DatabaseRoles { owner: RoleLogin, runtime: RoleLogin, notes: RoleLogin }

export const DEFAULT_ROLE_NAMES = { owner: 'tessera_owner', runtime: 'tessera_app', notes: 'tessera_notes' } as const
const NOTES_SCHEMA = 'notes'

const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/

export class RoleNameError extends TesseraError {
  readonly code = 'ERR_ROLE_NAME'
}

/** Creates or updates the three login roles and applies their grants, in one transaction. */
export async function ensureRoles (db: Db, roles: DatabaseRoles): Promise<void> {
  for (const role of Object.values(roles)) {
    if (!ROLE_NAME.test(role.name)) throw new RoleNameError(`role name ${JSON.stringify(role.name)}: expected 1 to 63 of a-z 0-9 _`)
  }
  const owner = sql.id(roles.owner.name)
  const runtime = sql.id(roles.runtime.name)
  const notes = sql.id(roles.notes.name)
  await db.transaction().execute(async (trx) => {
    const run = async (statement: RawBuilder<unknown>): Promise<void> => { await statement.execute(trx) }
    for (const role of [roles.owner, roles.runtime, roles.notes]) {
      const exists = await sql<{ one: number }>`SELECT 1 AS one FROM pg_roles WHERE rolname = ${role.name}`.execute(trx)
      // Utility statements take no bind parameters: the verifier goes in as an
      // escaped literal, and the password itself never reaches the server (db/scram.ts).
      const verifier = sql.lit(scramVerifier(role.password))
      await run(exists.rows.length === 0
        ? sql`CREATE ROLE ${sql.id(role.name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${verifier}`
        : sql`ALTER ROLE ${sql.id(role.name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${verifier}`)
    }
    const database = (await sql<{ name: string }>`SELECT current_database() AS name`.execute(trx)).rows[0]?.name ?? ''
    await run(sql`ALTER DATABASE ${sql.id(database)} OWNER TO ${owner}`)
    await run(sql`REVOKE ALL ON DATABASE ${sql.id(database)} FROM PUBLIC`)
    await run(sql`GRANT CONNECT ON DATABASE ${sql.id(database)} TO ${runtime}, ${notes}`)
    // PUBLIC's TEMPORARY went with ALL above; `tessera users import` keeps the names it has seen in a temporary table.
    await run(sql`GRANT TEMPORARY ON DATABASE ${sql.id(database)} TO ${runtime}`)
    await run(sql`ALTER SCHEMA public OWNER TO ${owner}`)
    await run(sql`REVOKE ALL ON SCHEMA public FROM PUBLIC`)
    await run(sql`GRANT USAGE ON SCHEMA public TO ${runtime}`)
    // Tables migrated before the roles existed (by a superuser) change hands.
    const tables = await sql<{ schema: string, name: string }>`SELECT schemaname AS schema, tablename AS name FROM pg_tables WHERE schemaname IN ('public', ${NOTES_SCHEMA})`.execute(trx)
    await run(sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(NOTES_SCHEMA)} AUTHORIZATION ${notes}`)
    await run(sql`ALTER SCHEMA ${sql.id(NOTES_SCHEMA)} OWNER TO ${notes}`)
    for (const table of tables.rows) {
      await run(sql`ALTER TABLE ${sql.id(table.schema, table.name)} OWNER TO ${table.schema === 'public' ? owner : notes}`)
    }
    // And Tessera's functions with them: a later migration that replaces one (0010 does) runs as the owner, and only an owner may.
    // regprocedure's text is Postgres's own quoting of the name and argument types; extensions' functions stay their extension's.
    const routines = await sql<{ signature: string }>`SELECT p.oid::regprocedure::text AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`.execute(trx)
    for (const routine of routines.rows) await run(sql`ALTER ROUTINE ${sql.raw(routine.signature)} OWNER TO ${owner}`)
    await run(sql`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${runtime}`)
    await run(sql`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${runtime}`)
    await run(sql`ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${runtime}`)
    await run(sql`ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${runtime}`)
  })
}

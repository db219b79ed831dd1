/**
 * Runs the numbered migrations in migrations/ at the repository root.
 * Kysely's migrator takes a row lock on its own lock table, so two processes
 * migrating at once run the migrations once.
 * @module
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { sql, type Kysely } from 'kysely'
import { DEFAULT_MIGRATION_TABLE, FileMigrationProvider, Migrator, type MigrationResultSet } from 'kysely/migration'
import { TesseraError } from '../errors.js'

// src/db and dist/db sit at the same depth below the repository root.
const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations')

export interface MigrationStatus {
  name: string
  appliedAt: Date | null
  /** False for a migration a newer build applied: this build has no file for it. */
  inThisBuild: boolean
}

/**
 * A database a newer build migrated, asked of this build what only that
 * build can do. Kysely's own word for it is "corrupted migrations", which
 * sends an operator rolling back looking for damage that is not there.
 */
export class SchemaNewerError extends TesseraError {
  readonly code = 'ERR_SCHEMA_NEWER'
}

/**
 * Tessera's tables in a schema other than public, which this build does not
 * read (connect.ts sets search_path = public): a deployment whose own
 * search_path (ALTER DATABASE|ROLE … SET, or options in DATABASE_URL) put
 * them there, as builds before commit 9c9de29 followed it. Left unsaid, the
 * start asked for `migrate up`, and `migrate up` asked for itself or made
 * an empty set of tables in public: every user, client and key gone from
 * the service's view.
 */
export class SchemaElsewhereError extends TesseraError {
  readonly code = 'ERR_SCHEMA_ELSEWHERE'

  constructor (schemas: string[], publicExists: boolean) {
    const [first = ''] = schemas
    const found = schemas.length === 1 ? `schema ${first}` : `schemas ${schemas.join(', ')}`
    const which = schemas.length === 1 ? first : '<the one this deployment used>'
    // One statement for everything of Tessera's in it (tables, their sequences, its functions and triggers), where SET SCHEMA goes table by table and leaves the functions behind. The DROP refuses while public holds anything.
    const move = `${publicExists ? 'BEGIN; DROP SCHEMA public; ' : ''}ALTER SCHEMA ${which} RENAME TO public;${publicExists ? ' COMMIT;' : ''}`
    super(`Tessera's tables are in ${found}, not in public, where this build reads them (each connection sets search_path = public): nothing was done. With every instance stopped, as a superuser or the owner of both schemas, put it in public's place: \`${move}\` (docs/operators.md, "Upgrading")`)
  }
}

/**
 * A role without USAGE on public, where Tessera's tables are: Postgres hides
 * them from it ("relation … does not exist"), which read as a database never
 * migrated (every command said to run `tessera migrate up`, `migrate status`
 * listed every migration pending, the start said the schema was behind) when
 * DATABASE_URL held another service's role: notes', which `tessera db roles`
 * keeps out of public, beside Tessera's in every secrets directory.
 */
export class SchemaOutOfReachError extends TesseraError {
  readonly code = 'ERR_SCHEMA_OUT_OF_REACH'

  constructor (role: string) {
    super(`the role in DATABASE_URL, ${role}, may not use schema public, where Tessera's tables are: nothing was done. Connect as Tessera's runtime role (tessera_app, as \`tessera db roles\` makes it), or as its owner role for \`tessera migrate\` (docs/operators.md, "Database roles")`)
  }
}

/**
 * Refuses with SchemaElsewhereError when public has no migrations table of
 * Tessera's and another schema has one, and with SchemaOutOfReachError when
 * public has them and the role may not use it. Read from pg_catalog, which every
 * role sees whole (information_schema shows a role only what it has rights
 * on). Tessera's is the one beside a signing_keys table: notes keeps a
 * migrations table of its own in schema notes.
 */
export async function refuseSchemaElsewhere<T> (db: Kysely<T>): Promise<void> {
  const { rows } = await sql<{ schema: string, public_exists: boolean }>`
    WITH tessera AS (
      SELECT n.nspname FROM pg_namespace n
      WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'r' AND c.relname = ${DEFAULT_MIGRATION_TABLE})
        AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'r' AND c.relname = 'signing_keys')
    )
    SELECT quote_ident(nspname) AS schema, EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') AS public_exists
    FROM tessera WHERE nspname <> 'public' AND NOT EXISTS (SELECT 1 FROM tessera WHERE nspname = 'public')
    ORDER BY nspname`.execute(db)
  if (rows.length > 0) throw new SchemaElsewhereError(rows.map((r) => r.schema), rows[0]?.public_exists === true)
  // And SchemaOutOfReachError when public has them but this role may not look in it.
  const { rows: [reach] } = await sql<{ role: string, hidden: boolean }>`
    SELECT current_user AS role, EXISTS (
      SELECT 1 FROM pg_namespace n
      WHERE n.nspname = 'public' AND NOT has_schema_privilege(n.oid, 'USAGE')
        AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'r' AND c.relname = ${DEFAULT_MIGRATION_TABLE})
        AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'r' AND c.relname = 'signing_keys')
    ) AS hidden`.execute(db)
  if (reach?.hidden === true) throw new SchemaOutOfReachError(reach.role)
}

/**
 * Kysely's migrator with its tables named in public. Unnamed, it took a
 * table of that name in any schema the role may use for its own: notes'
 * (notes.kysely_migration, services/notes/src/db.ts) on a database notes
 * had started on first, so it made none in public and every `migrate up`
 * failed with "relation "kysely_migration" does not exist".
 */
function migrator<T> (db: Kysely<T>): Migrator {
  return new Migrator({ db, migrationTableSchema: 'public', provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }) })
}

/**
 * Why Postgres failed a migration's statement because of other sessions'
 * locks, by its error code: what instances serving meanwhile cause, and what
 * running it again (at a quieter moment if it comes back) gets past.
 */
const GAVE_WAY: Record<string, string> = {
  '40P01': 'Postgres broke a deadlock between it and transactions of instances serving meanwhile by failing it',
  '55P03': 'it waited longer than lock_timeout for a table that transactions of instances serving meanwhile held',
  57014: 'it was cancelled: statement_timeout, spent most often waiting for a table that transactions of instances serving meanwhile held (or on a large table its own work took longer: then raise it for the run), or pg_cancel_backend'
}

/**
 * A migration failed by other sessions' locks (a deadlock, lock_timeout,
 * statement_timeout), which Postgres's own words ("deadlock detected") leave
 * an operator to guess at: which one, that its transaction was rolled back
 * (each migration is one: Kysely's migrator wraps it with its bookkeeping
 * row), that those before it stay committed, and that running it again is
 * the remedy.
 */
export class MigrationGaveWayError extends TesseraError {
  readonly code = 'ERR_MIGRATION_GAVE_WAY'

  constructor (direction: 'up' | 'down', failed: string | undefined, done: string[], cause: Error, why: string) {
    const verb = direction === 'up' ? 'applied' : 'reverted'
    const which = failed ?? `the next migration to be ${verb}`
    const kept = done.length > 0 ? `; ${verb} before it, and still so: ${done.join(', ')}` : ''
    const again = direction === 'up' ? `\`tessera migrate up\` again, at a quieter moment if this comes back: it goes on from ${which}` : '`tessera migrate down --yes` again, at a quieter moment if this comes back'
    super(`${which} was not ${verb}: ${cause.message} (${why}). Its transaction was rolled back, so it changed nothing${kept}. Run ${again} (docs/operators.md, "Upgrading")`, { cause })
  }
}

/** The names a step applied or reverted; a failure of other sessions' locks as MigrationGaveWayError, after `done`. */
function unwrap ({ error, results }: MigrationResultSet, direction: 'up' | 'down', done: string[] = []): string[] {
  if (error !== undefined) {
    const cause = error instanceof Error ? error : new Error(String(error))
    const why = GAVE_WAY[String((cause as Error & { code?: unknown }).code)]
    if (why === undefined) throw cause
    throw new MigrationGaveWayError(direction, results?.find((r) => r.status === 'Error')?.migrationName, done, cause, why)
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}

/**
 * Applies every pending migration; returns the names applied (none when up to
 * date). A schema a newer build migrated, with nothing of this build's
 * pending, is left as it is (none applied): the code rolled back over an
 * additive migration, which must not stop a deployment's migrate step.
 *
 * Each migration commits on its own. In one transaction, one migration's
 * ACCESS EXCLUSIVE lock (0007's on refresh_tokens) was held while a later one
 * (0011's on users) waited behind a live instance's refresh, which held users
 * and waited for refresh_tokens: Postgres failed the upgrade as a deadlock.
 */
export async function migrateUp<T> (db: Kysely<T>): Promise<string[]> {
  await refuseSchemaElsewhere(db)
  if (await refusedAsNewer(db, 'up')) return []
  return await newerRefusedInWords(db, 'up', async () => {
    const applied: string[] = []
    for (;;) {
      const step = unwrap(await migrator(db).migrateUp(), 'up', applied)
      if (step.length === 0) return applied
      applied.push(...step)
    }
  })
}

/** Reverts the newest applied migration; returns its name, or nothing when none is applied. */
export async function migrateDown<T> (db: Kysely<T>): Promise<string[]> {
  await refuseSchemaElsewhere(db)
  await refusedAsNewer(db, 'down')
  return await newerRefusedInWords(db, 'down', async () => unwrap(await migrator(db).migrateDown(), 'down'))
}

/**
 * Throws SchemaNewerError when a newer build's migrations stand in the way of
 * `direction`; true when there is nothing for `up` to do (a newer schema with
 * none of this build's pending).
 */
async function refusedAsNewer<T> (db: Kysely<T>, direction: 'up' | 'down'): Promise<boolean> {
  const { pending, unknownHere } = await schemaStanding(db)
  if (unknownHere.length === 0) return false
  if (direction === 'down') {
    throw new SchemaNewerError(`migrations a newer build applied (${unknownHere.join(', ')}) are not in this build: revert them with the build that applied them`)
  }
  if (pending.length === 0) return true
  throw new SchemaNewerError(`the database has migrations this build lacks (${unknownHere.join(', ')}) and lacks some of this build's (${pending.join(', ')}): migrate with the build that applied ${unknownHere.join(', ')}`)
}

/** A newer build that migrated between the check above and Kysely's own read (which holds its lock) is said as the check says it, not as Kysely's "corrupted migrations". */
async function newerRefusedInWords<T> (db: Kysely<T>, direction: 'up' | 'down', run: () => Promise<string[]>): Promise<string[]> {
  try {
    return await run()
  } catch (err) {
    if (await refusedAsNewer(db, direction)) return []
    throw err
  }
}

/**
 * The tables in public that this connection's role owns when public is
 * another role's, one that grants on public's tables by default (the owner
 * role `tessera db roles` makes): migrations run as a superuser make their
 * tables the superuser's, so the owner's default grants never reach the
 * runtime role, and every request that reads them fails until `db roles`
 * hands them over. Undefined when there are none.
 */
export async function tablesOutsideOwner<T> (db: Kysely<T>): Promise<{ role: string, owner: string, tables: string[] } | undefined> {
  const { rows: [found] } = await sql<{ role: string, owner: string, tables: string[] }>`
    SELECT current_user AS role, pg_get_userbyid(n.nspowner) AS owner, array_agg(c.relname::text ORDER BY c.relname) AS tables
    FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
    WHERE n.nspname = 'public' AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
      AND n.nspowner <> c.relowner
      -- db roles' mark: the owner's default grants on public's tables. Public's owner alone says nothing of
      -- db roles: pg_database_owner (Postgres 15), the bootstrap superuser (before it), a managed Postgres's
      -- admin group, of which the login that migrates is a member (Azure's azure_pg_admin).
      AND EXISTS (SELECT 1 FROM pg_default_acl d WHERE d.defaclrole = n.nspowner AND d.defaclnamespace = n.oid AND d.defaclobjtype = 'r')
    GROUP BY n.nspowner`.execute(db)
  return found
}

/** This build's migrations, applied or pending, then those a newer build applied. */
export async function migrationStatus<T> (db: Kysely<T>): Promise<MigrationStatus[]> {
  await refuseSchemaElsewhere(db)
  const all = await migrator(db).getMigrations()
  const names = new Set(all.map((m) => m.name))
  const newer = (await appliedMigrations(db)).filter((m) => !names.has(m.name))
  return [
    ...all.map((m) => ({ name: m.name, appliedAt: m.executedAt ?? null, inThisBuild: true })),
    ...newer.map((m) => ({ name: m.name, appliedAt: m.timestamp, inThisBuild: false }))
  ]
}

/** Kysely writes ISO 8601 into its text column; a row written otherwise (by hand) has no date to show. */
function readableDate (text: string): Date | null {
  const date = new Date(text)
  return Number.isNaN(date.getTime()) ? null : date
}

/** Kysely's own record of what was applied; none on a database never migrated (the table is made by the first migration run). */
async function appliedMigrations<T> (db: Kysely<T>): Promise<Array<{ name: string, timestamp: Date | null }>> {
  const { rows: [table] } = await sql<{ present: boolean }>`SELECT to_regclass('kysely_migration') IS NOT NULL AS present`.execute(db)
  if (table?.present !== true) return []
  return (await sql<{ name: string, timestamp: string }>`SELECT name, timestamp FROM kysely_migration ORDER BY name`.execute(db)).rows
    .map((r) => ({ name: r.name, timestamp: readableDate(r.timestamp) }))
}

export interface SchemaStanding {
  /** This build's migrations the database has not applied. */
  pending: string[]
  /** Migrations the database has applied that this build has no file for: a newer build migrated it. */
  unknownHere: string[]
}

/**
 * Where the schema stands against this build, from one read of the files and
 * of Kysely's own table (the migrator reads that table only for the files it
 * knows).
 */
export async function schemaStanding<T> (db: Kysely<T>): Promise<SchemaStanding> {
  const known = await migrator(db).getMigrations()
  const names = new Set(known.map((m) => m.name))
  return {
    pending: known.filter((m) => m.executedAt === undefined).map((m) => m.name),
    unknownHere: (await appliedMigrations(db)).map((m) => m.name).filter((name) => !names.has(name))
  }
}

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
import { FileMigrationProvider, Migrator, type MigrationResultSet } from 'kysely/migration'
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

function migrator<T> (db: Kysely<T>): Migrator {
  return new Migrator({ db, provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }) })
}

function unwrap ({ error, results }: MigrationResultSet): string[] {
  if (error !== undefined) throw error instanceof Error ? error : new Error(String(error))
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
  if (await refusedAsNewer(db, 'up')) return []
  return await newerRefusedInWords(db, 'up', async () => {
    const applied: string[] = []
    for (;;) {
      const step = unwrap(await migrator(db).migrateUp())
      if (step.length === 0) return applied
      applied.push(...step)
    }
  })
}

/** Reverts the newest applied migration; returns its name, or nothing when none is applied. */
export async function migrateDown<T> (db: Kysely<T>): Promise<string[]> {
  await refusedAsNewer(db, 'down')
  return await newerRefusedInWords(db, 'down', async () => unwrap(await migrator(db).migrateDown()))
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

/** This build's migrations, applied or pending, then those a newer build applied. */
export async function migrationStatus<T> (db: Kysely<T>): Promise<MigrationStatus[]> {
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

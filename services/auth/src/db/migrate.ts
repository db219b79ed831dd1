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

// src/db and dist/db sit at the same depth below the repository root.
const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations')

export interface MigrationStatus {
  name: string
  appliedAt: Date | null
}

function migrator<T> (db: Kysely<T>): Migrator {
  return new Migrator({ db, provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }) })
}

function unwrap ({ error, results }: MigrationResultSet): string[] {
  if (error !== undefined) throw error instanceof Error ? error : new Error(String(error))
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}

/** Applies every pending migration; returns the names applied (none when up to date). */
export async function migrateUp<T> (db: Kysely<T>): Promise<string[]> {
  return unwrap(await migrator(db).migrateToLatest())
}

/** Reverts the newest applied migration; returns its name, or nothing when none is applied. */
export async function migrateDown<T> (db: Kysely<T>): Promise<string[]> {
  return unwrap(await migrator(db).migrateDown())
}

export async function migrationStatus<T> (db: Kysely<T>): Promise<MigrationStatus[]> {
  const all = await migrator(db).getMigrations()
  return all.map((m) => ({ name: m.name, appliedAt: m.executedAt ?? null }))
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
  const { rows } = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db)
  return {
    pending: known.filter((m) => m.executedAt === undefined).map((m) => m.name),
    unknownHere: rows.map((r) => r.name).filter((name) => !names.has(name))
  }
}

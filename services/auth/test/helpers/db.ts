/**
 * A fresh database per test file, cloned from the migrated template that
 * scripts/with-test-db.mjs prepared, dropped when the file ends.
 */
import { createTestDatabase, testDatabaseEnv } from '@tessera/testkit'
import { randomBytes } from 'node:crypto'
import { Kysely, PostgresDialect, type CompiledQuery } from 'kysely'
import type { Test } from 'tap'
import pg from 'pg'
import { connect, type Connection } from '../../src/db/connect.js'
import type { Database } from '../../src/db/database.js'
import type { DatabaseRoles } from '../../src/db/roles.js'

export { createTestDatabase, testDatabaseEnv as testEnv } from '@tessera/testkit'

export async function testConnection (t: Test, url?: string): Promise<Connection> {
  const connection = connect(url ?? await createTestDatabase(t))
  t.teardown(connection.close)
  return connection
}

/**
 * Kysely over one connection of its own that hands `log` every statement it
 * sends, ended at teardown. Its pool listens for errors, as connect()'s
 * does: pg-pool's end() resolves once it has asked its client to close,
 * before the server has heard it, so the teardown's DROP DATABASE … WITH
 * (FORCE) can still terminate that backend, and its 57P01 reached a pool
 * with no listener as an uncaught exception (large-tables.test, once in a
 * full run; 36 times in 100 ends followed at once by the drop).
 */
export function loggingDb (t: Test, url: string, log: (query: CompiledQuery) => void): Kysely<Database> {
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  pool.on('error', () => {})
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), log: (event) => { log(event.query) } })
  t.teardown(async () => { await db.destroy() })
  return db
}

/**
 * Backends of this client's database waiting for a lock: how a test knows a
 * request is parked behind a row it holds, instead of sleeping and hoping.
 * The client must not be inside a transaction (pg_stat_activity is read once
 * per transaction).
 */
export async function lockWaiters (client: pg.ClientBase): Promise<number> {
  const res = await client.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
  return Number(res.rows[0]?.n)
}

/** `databaseUrl` with another role's name and password (a role `tessera db roles` made). */
export function urlAs (databaseUrl: string, role: { name: string, password: string }): string {
  const url = new URL(databaseUrl)
  url.username = role.name
  url.password = role.password
  return url.toString()
}

/** One statement as the test cluster's superuser (roles are cluster-wide: made and dropped so). */
export async function asAdmin (statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: testDatabaseEnv().adminUrl })
  await client.connect()
  try { await client.query(statement) } finally { await client.end() }
}

/**
 * Owner, runtime and notes roles of names no other test uses, dropped at the
 * end. Call it before createTestDatabase: teardowns run last-in, first-out,
 * and a role is dropped only after the database it owns.
 */
export function scratchRoles (t: Test): DatabaseRoles {
  const suffix = randomBytes(4).toString('hex')
  const roles: DatabaseRoles = {
    owner: { name: `t_owner_${suffix}`, password: randomBytes(12).toString('base64url') },
    runtime: { name: `t_app_${suffix}`, password: randomBytes(12).toString('base64url') },
    notes: { name: `t_notes_${suffix}`, password: randomBytes(12).toString('base64url') }
  }
  t.teardown(async () => { for (const role of Object.values(roles)) await asAdmin(`DROP ROLE IF EXISTS "${role.name}"`) })
  return roles
}

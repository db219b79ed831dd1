/**
 * A fresh database per test file, cloned from the migrated template that
 * scripts/with-test-db.mjs prepared, dropped when the file ends.
 */
import { createTestDatabase } from '@tessera/testkit'
import type { Test } from 'tap'
import type pg from 'pg'
import { connect, type Connection } from '../../src/db/connect.js'

export { createTestDatabase, testDatabaseEnv as testEnv } from '@tessera/testkit'

export async function testConnection (t: Test, url?: string): Promise<Connection> {
  const connection = connect(url ?? await createTestDatabase(t))
  t.teardown(connection.close)
  return connection
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

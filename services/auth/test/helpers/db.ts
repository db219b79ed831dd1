/**
 * A fresh database per test file, cloned from the migrated template that
 * scripts/with-test-db.mjs prepared, dropped when the file ends.
 */
import { createTestDatabase } from '@tessera/testkit'
import type { Test } from 'tap'
import { connect, type Connection } from '../../src/db/connect.js'

export { createTestDatabase, testDatabaseEnv as testEnv } from '@tessera/testkit'

export async function testConnection (t: Test, url?: string): Promise<Connection> {
  const connection = connect(url ?? await createTestDatabase(t))
  t.teardown(connection.close)
  return connection
}

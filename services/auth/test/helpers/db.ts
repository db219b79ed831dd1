/**
 * A fresh database per test file, cloned from the migrated template that
 * scripts/with-test-db.mjs prepared, dropped when the file ends.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Test } from 'tap'
import { connect, type Connection } from '../../src/db/connect.js'

export function testEnv (): { adminUrl: string, template: string } {
  const adminUrl = process.env.TESSERA_TEST_ADMIN_URL
  const template = process.env.TESSERA_TEST_TEMPLATE
  if (adminUrl === undefined || template === undefined) {
    throw new Error('run the tests through `make test` (scripts/with-test-db.mjs provides the database)')
  }
  return { adminUrl, template }
}

async function admin (sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: testEnv().adminUrl })
  await client.connect()
  try { await client.query(sql) } finally { await client.end() }
}

/** Creates a database (migrated unless `empty`) and returns its URL; dropped at teardown. */
export async function createTestDatabase (t: Test, options: { empty?: boolean } = {}): Promise<string> {
  const { adminUrl, template } = testEnv()
  const name = `tessera_t_${randomBytes(6).toString('hex')}`
  await admin(options.empty === true ? `CREATE DATABASE "${name}"` : `CREATE DATABASE "${name}" TEMPLATE "${template}"`)
  t.teardown(async () => { await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) })
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

export async function testConnection (t: Test, url?: string): Promise<Connection> {
  const connection = connect(url ?? await createTestDatabase(t))
  t.teardown(connection.close)
  return connection
}

import { randomBytes } from 'node:crypto'
import pg from 'pg'

/** What a test runner offers to run after the test: tap's `t.teardown`. */
export interface Teardown { teardown: (fn: () => Promise<void>) => void }

/** The server and the migrated template that scripts/with-test-db.mjs prepared for this run. */
export function testDatabaseEnv (): { adminUrl: string, template: string } {
  const adminUrl = process.env.TESSERA_TEST_ADMIN_URL
  const template = process.env.TESSERA_TEST_TEMPLATE
  if (adminUrl === undefined || template === undefined) {
    throw new Error('run the tests through `make test` or `make test-fast` (scripts/with-test-db.mjs provides the database)')
  }
  return { adminUrl, template }
}

async function admin (sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: testDatabaseEnv().adminUrl })
  await client.connect()
  try { await client.query(sql) } finally { await client.end() }
}

/**
 * A database of its own for one test (a clone of the migrated template, or
 * `empty`), dropped at teardown; returns its URL. Cloning takes milliseconds,
 * so test files never share rows and can run in parallel.
 */
export async function createTestDatabase (t: Teardown, options: { empty?: boolean } = {}): Promise<string> {
  const { adminUrl, template } = testDatabaseEnv()
  const name = `tessera_t_${randomBytes(6).toString('hex')}`
  await admin(options.empty === true ? `CREATE DATABASE "${name}"` : `CREATE DATABASE "${name}" TEMPLATE "${template}"`)
  t.teardown(async () => { await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) })
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

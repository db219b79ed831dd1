#!/usr/bin/env node
// Runs a command with one Postgres for the whole test run: the embedded one
// under .data/test (started here, stopped after), or the server that
// DATABASE_URL names. A migrated template database is made once; each test
// file clones it (CREATE DATABASE … TEMPLATE) so files are isolated and can
// run in parallel. The command gets TESSERA_TEST_ADMIN_URL and
// TESSERA_TEST_TEMPLATE.
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import pg from 'pg'
import { Kysely, PostgresDialect } from 'kysely'
import { startEmbeddedPostgres } from '../services/auth/dist/db/embedded.js'
import { migrateUp } from '../services/auth/dist/db/migrate.js'

const [command, ...args] = process.argv.slice(2)
if (command === undefined) {
  process.stderr.write('usage: with-test-db.mjs COMMAND [ARGS…]\n')
  process.exit(2)
}

const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres(resolve('.data/test'))
const adminUrl = embedded?.adminUrl ?? process.env.DATABASE_URL
const template = `tessera_template_${process.pid}`

async function admin (sql) {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try { return await client.query(sql) } finally { await client.end() }
}

let code = 1
try {
  if (embedded) {
    // This cluster only ever holds test databases, so it can run with Postgres'
    // non-durable settings (https://www.postgresql.org/docs/current/non-durability.html):
    // cloning a test database then takes a third of the time and dropping it a
    // tenth. Never on a server that DATABASE_URL names.
    for (const setting of ['fsync', 'full_page_writes', 'synchronous_commit']) await admin(`ALTER SYSTEM SET ${setting} = off`)
    await admin('SELECT pg_reload_conf()')
    // Leftovers from an interrupted earlier run on the same embedded server.
    const stale = await admin("SELECT datname FROM pg_database WHERE datname LIKE 'tessera\\_t\\_%' OR datname LIKE 'tessera\\_template\\_%'")
    for (const { datname } of stale.rows) await admin(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`)
  }
  await admin(`CREATE DATABASE "${template}"`)
  const url = new URL(adminUrl)
  url.pathname = `/${template}`
  const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url.toString(), max: 1 }) }) })
  await migrateUp(db)
  await db.destroy()
  code = await new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: 'inherit',
      env: { ...process.env, TESSERA_TEST_ADMIN_URL: adminUrl, TESSERA_TEST_TEMPLATE: template }
    })
    for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
    child.on('close', (exit) => resolve(exit ?? 1))
  })
} finally {
  await admin(`DROP DATABASE IF EXISTS "${template}" WITH (FORCE)`).catch(() => undefined)
  await embedded?.stop()
}
process.exit(code)

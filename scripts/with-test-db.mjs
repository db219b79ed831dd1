#!/usr/bin/env node
// Runs a command with one Postgres for the whole test run: the embedded one
// under .data/test (started here, or adopted when another run started it), or
// the server that DATABASE_URL names. A migrated template database is made
// once; each test file clones it (CREATE DATABASE … TEMPLATE) so files are
// isolated and can run in parallel. The command gets TESSERA_TEST_ADMIN_URL,
// TESSERA_TEST_TEMPLATE and TESSERA_TEST_PREFIX.
//
// Every database of this run is named with its prefix (this machine and this
// process id: packages/testkit, runPrefix), so that two runs can share one
// server: at start a run drops only the leftovers of runs that died, at the
// end its own, and the last live run on the embedded server stops it.
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import pg from 'pg'
import { Kysely, PostgresDialect } from 'kysely'
import { dropStaleTestDatabases, listTestDatabases, otherLiveRuns, runPrefix, runTemplate } from '../packages/testkit/dist/index.js'
import { startEmbeddedPostgres, stopEmbeddedPostgres } from '../services/auth/dist/db/embedded.js'
import { migrateUp } from '../services/auth/dist/db/migrate.js'

const [command, ...args] = process.argv.slice(2)
if (command === undefined) {
  process.stderr.write('usage: with-test-db.mjs COMMAND [ARGS…]\n')
  process.exit(2)
}

const dataDir = resolve('.data/test')
const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres(dataDir)
const adminUrl = embedded?.adminUrl ?? process.env.DATABASE_URL
const prefix = runPrefix()
const template = runTemplate(prefix)

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
    // Databases named before runs had a prefix of their own: only this
    // checkout's earlier runs ever made any on its embedded server.
    const unowned = await admin("SELECT datname FROM pg_database WHERE datname ~ '^tessera_(t_[0-9a-f]{12}|template_[0-9]+)$'")
    for (const { datname } of unowned.rows) await admin(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`)
  }
  await dropStaleTestDatabases(adminUrl)
  await admin(`CREATE DATABASE "${template}"`)
  const url = new URL(adminUrl)
  url.pathname = `/${template}`
  const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url.toString(), max: 1 }) }) })
  await migrateUp(db)
  await db.destroy()
  code = await new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: 'inherit',
      env: { ...process.env, TESSERA_TEST_ADMIN_URL: adminUrl, TESSERA_TEST_TEMPLATE: template, TESSERA_TEST_PREFIX: prefix }
    })
    for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
    child.on('close', (exit) => resolve(exit ?? 1))
  })
} finally {
  // Ours only: the template, and any clone a killed test file left behind.
  await dropStaleTestDatabases(adminUrl).catch(() => undefined)
  // Whoever started the embedded server, the last run out stops it; a run
  // still going keeps it.
  if (embedded !== undefined && otherLiveRuns(await listTestDatabases(adminUrl).catch(() => [])).length === 0) await stopEmbeddedPostgres(dataDir)
}
process.exit(code)

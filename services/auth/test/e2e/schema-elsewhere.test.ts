/**
 * An upgrade past `search_path = public` (db/connect.ts) of a deployment
 * whose own search_path (ALTER DATABASE|ROLE … SET, options in DATABASE_URL)
 * put Tessera's tables in another schema: the new build finds none in
 * public. It must say where they are, never make an empty set in public for
 * the service to serve from; and what it says to do must work.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promises as fs } from 'node:fs'
import pg from 'pg'
import { Kysely, PostgresDialect } from 'kysely'
import { FileMigrationProvider, Migrator } from 'kysely/migration'
import { runProcess } from '@tessera/testkit'
import { createTestDatabase } from '../helpers/db.js'
import { runCli, SERVER_ENTRY, startServer } from '../helpers/server.js'

const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations')

/** Migrates as builds before search_path = public did: over connections that take the database's own search_path. */
async function migrateAsBefore (url: string): Promise<void> {
  const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }) })
  try {
    const { error } = await new Migrator({ db, provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }) }).migrateToLatest()
    if (error !== undefined) throw error
  } finally {
    await db.destroy()
  }
}

t.test('tables a search_path of the deployment\'s put in schema tessera: every way in refuses, naming it, and creates nothing; the advice it prints moves them', async (t) => {
  const url = await createTestDatabase(t, { empty: true })
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  t.teardown(async () => { await admin.end() })
  await admin.query('CREATE SCHEMA tessera')
  await admin.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET search_path = tessera`)
  await migrateAsBefore(url)
  await admin.query("INSERT INTO tessera.users (username, password_hash) VALUES ('kept', 'x')")
  const inPublic = async (): Promise<string[]> =>
    (await admin.query<{ name: string }>("SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1")).rows.map((r) => r.name)

  const advice = 'BEGIN; DROP SCHEMA public; ALTER SCHEMA tessera RENAME TO public; COMMIT;'
  const refusal = `Tessera's tables are in schema tessera, not in public, where this build reads them (each connection sets search_path = public): nothing was done. With every instance stopped, as a superuser or the owner of both schemas, put it in public's place: \`${advice}\` (docs/operators.md, "Upgrading")`
  const env = { DATABASE_URL: url }
  for (const args of [['migrate', 'up'], ['migrate', 'status'], ['migrate', 'down', '--yes'], ['users', 'list']]) {
    const result = await runCli(args, env)
    t.same([result.code, result.stdout, result.stderr], [1, '', `tessera: ${refusal}\n`], args.join(' '))
  }
  t.same(await inPublic(), [], 'nothing was made in public')

  const serverEnv = { PATH: process.env.PATH ?? '', PORT: '0', DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const start = await runProcess(process.execPath, [SERVER_ENTRY], { env: serverEnv })
  t.same([start.code, start.stderr], [1, `tessera: failed to start: ${refusal}\n`], 'the server does not start')
  t.same(await inPublic(), [], 'still nothing in public')

  // As the message says it, taken from the message.
  await admin.query(refusal.match(/`([^`]+)`/)?.[1] ?? '')
  const up = await runCli(['migrate', 'up'], env)
  t.same([up.code, up.stdout, up.stderr], [0, 'already up to date\n', ''], 'migrate up finds the schema it had')
  const users = await runCli(['users', 'list', '--json'], env)
  t.match(JSON.parse(users.stdout), [{ username: 'kept' }], 'with its rows')
  const server = await startServer(t, serverEnv)
  // A login runs Tessera's functions (tessera_start_login, tessera_count_login_attempt), which moved with the schema.
  const login = await fetch(`${server.url}/oauth/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'password', username: 'nobody', password: 'wrong horse battery' }) })
  t.same([login.status, ((await login.json()) as { error?: string }).error], [400, 'invalid_grant'])
  t.equal(await server.stop(), 0)
})

t.test('public dropped as well: the advice is the rename alone, and it works', async (t) => {
  const url = await createTestDatabase(t, { empty: true })
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  t.teardown(async () => { await admin.end() })
  await admin.query('CREATE SCHEMA "Tessera Data"')
  await admin.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET search_path = "Tessera Data"`)
  await migrateAsBefore(url)
  await admin.query('DROP SCHEMA public')
  const up = await runCli(['migrate', 'up'], { DATABASE_URL: url })
  t.equal(up.code, 1)
  t.match(up.stderr, 'Tessera\'s tables are in schema "Tessera Data", not in public')
  const statement = up.stderr.match(/`([^`]+)`/)?.[1] ?? ''
  t.equal(statement, 'ALTER SCHEMA "Tessera Data" RENAME TO public;')
  await admin.query(statement)
  const again = await runCli(['migrate', 'up'], { DATABASE_URL: url })
  t.same([again.code, again.stdout], [0, 'already up to date\n'])
})

t.test('only notes\' migrations table outside public: migrate up makes Tessera\'s in public', async (t) => {
  const url = await createTestDatabase(t, { empty: true })
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  t.teardown(async () => { await admin.end() })
  // As notes' migrator leaves it (services/notes/src/db.ts, migrationTableSchema 'notes').
  await admin.query('CREATE SCHEMA notes; CREATE TABLE notes.kysely_migration (name varchar(255) PRIMARY KEY, timestamp varchar(255) NOT NULL)')
  const up = await runCli(['migrate', 'up'], { DATABASE_URL: url })
  t.equal(up.code, 0, up.stderr)
  t.match(up.stdout, /^applied 0001_initial/)
})

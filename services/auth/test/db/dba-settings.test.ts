/**
 * Tessera on a database whose defaults a DBA changed (ALTER DATABASE … SET,
 * as ALTER ROLE … SET would): connect() sets on each connection what
 * Tessera's statements rely on (sessionSetup), so each of these settings,
 * which broke a start, a read or a lock wait, no longer reaches them. Each
 * test sets them on its own database, dropped with it.
 */
import t, { type Test } from 'tap'
import pg from 'pg'
import { sql } from 'kysely'
import { connect, type Connection } from '../../src/db/connect.js'
import { migrateUp } from '../../src/db/migrate.js'
import { authenticateClient } from '../../src/clients/authenticate.js'
import { createClient } from '../../src/clients/register.js'
import { rotateClientSecret } from '../../src/clients/rotate-secret.js'
import { OAuthError } from '../../src/errors.js'
import { buildTestApp, login, signUp } from '../helpers/app.js'
import { createTestDatabase, lockWaiters } from '../helpers/db.js'

const OPERATOR = { actor: 'operator' }

/** A test database with these defaults, set as a DBA sets them (new connections take them); the database is dropped at teardown. */
async function tunedDatabase (t: Test, settings: Record<string, string>, options: { empty?: boolean } = {}): Promise<string> {
  const url = await createTestDatabase(t, options)
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  try {
    for (const [name, value] of Object.entries(settings)) await admin.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET ${name} = ${value}`)
  } finally { await admin.end() }
  return url
}

function connected (t: Test, url: string, statementTimeoutMs = 0): Connection {
  const connection = connect(url, 2, { statementTimeoutMs })
  t.teardown(connection.close)
  return connection
}

t.test("DateStyle 'SQL, DMY' and a far time zone: an app starts on the database, and its times are the instants written", async (t) => {
  const url = await tunedDatabase(t, { DateStyle: "'SQL, DMY'", TimeZone: "'Pacific/Chatham'" })
  const plain = new pg.Client({ connectionString: url })
  await plain.connect()
  t.teardown(async () => { await plain.end() })
  t.equal((await plain.query('SELECT now() AS at')).rows[0].at, null, 'node-postgres on its own reads such a timestamp as null')
  // Its start reads and writes signing keys, whose times it hands to the workers.
  const ctx = await buildTestApp(t, {}, { connection: connected(t, url) })
  await signUp(ctx.app, 'dmy', 'correct horse battery')
  const tokens = await login(ctx.app, 'dmy', 'correct horse battery')
  const sessions = await ctx.app.inject({ method: 'GET', url: '/v1/sessions', headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(sessions.statusCode, 200)
  t.equal(sessions.json().sessions[0].created_at, ctx.deps.clock().toISOString(), 'the session\'s start, as the clock gave it')
})

t.test('extra_float_digits -15: a rotated-out client secret still ends when its grace does', async (t) => {
  const db = connected(t, await tunedDatabase(t, { extra_float_digits: '-15' })).db
  const created = await createClient(db, { clientId: 'svc', confidential: true, grants: ['client_credentials'], scopes: ['read'], resources: [] }, new Date(), OPERATOR)
  const rotatedAt = new Date()
  await rotateClientSecret(db, { clientId: 'svc', graceSeconds: 60, clock: () => rotatedAt }, OPERATOR)
  const withOld = async (now: Date): Promise<string> => await authenticateClient({ db, config: { defaultClientId: 'tessera' } }, { credentials: { method: 'client_secret_basic', clientId: 'svc', secret: created.secret ?? '' }, now, context: {} })
    .then(() => 'accepted', (err: unknown) => err instanceof OAuthError ? `${err.error} ${String(err.detail)}` : Promise.reject(err))
  t.equal(await withOld(new Date(rotatedAt.getTime() + 59_999)), 'accepted', 'within the grace')
  // Rounded to one digit, the grace's end read as 2e+12 ms (2033), or 1e+12 (2001).
  t.equal(await withOld(new Date(rotatedAt.getTime() + 60_000)), 'invalid_client wrong secret', 'not at its end')
})

t.test('default_transaction_isolation serializable: Tessera\'s transactions are read committed, which its row locks are reasoned for', async (t) => {
  const db = connected(t, await tunedDatabase(t, { default_transaction_isolation: "'serializable'" })).db
  const isolation = await db.transaction().execute(async (trx) => (await sql<{ level: string }>`SELECT current_setting('transaction_isolation') AS level`.execute(trx)).rows[0]?.level)
  t.equal(isolation, 'read committed')
})

t.test('lock_timeout 50ms: a statement of a pool with a statement timeout waits for a row lock, bounded by that timeout only', async (t) => {
  const url = await tunedDatabase(t, { lock_timeout: "'50ms'" })
  const db = connected(t, url, 10_000).db
  await db.insertInto('login_throttle').values({ username: 'held', failures: 1, last_failed_at: new Date() }).execute()
  const holder = new pg.Client({ connectionString: url })
  const watcher = new pg.Client({ connectionString: url })
  await Promise.all([holder.connect(), watcher.connect()])
  t.teardown(async () => { await Promise.all([holder.end(), watcher.end()]) })
  await holder.query('BEGIN')
  await holder.query("SELECT 1 FROM login_throttle WHERE username = 'held' FOR UPDATE")
  const update = db.updateTable('login_throttle').set({ failures: 2 }).where('username', '=', 'held').execute().then(() => 'updated', (err: { code?: string }) => `failed ${String(err.code)}`)
  while (await lockWaiters(watcher) === 0) await new Promise((resolve) => setTimeout(resolve, 20))
  // Still waiting, so far past 50 ms that the database's lock_timeout would have ended it, then let through.
  await new Promise((resolve) => setTimeout(resolve, 300))
  await holder.query('COMMIT')
  t.equal(await update, 'updated')
  const cli = connected(t, url).db
  t.same((await sql<{ lock_timeout: string }>`SHOW lock_timeout`.execute(cli)).rows, [{ lock_timeout: '50ms' }], 'a pool without a statement timeout (the CLI) keeps the database\'s')
})

t.test('a schema named after the role, first in the default search_path: migrate up still makes its tables in public, where the runtime role reads them', async (t) => {
  const url = await tunedDatabase(t, {}, { empty: true })
  const setup = new pg.Client({ connectionString: url })
  await setup.connect()
  t.teardown(async () => { await setup.end() })
  await setup.query('CREATE SCHEMA AUTHORIZATION CURRENT_USER')
  await migrateUp(connected(t, url).db)
  const { rows } = await setup.query<{ schema: string }>("SELECT DISTINCT schemaname AS schema FROM pg_tables WHERE tablename IN ('users', 'signing_keys', 'kysely_migration')")
  t.same(rows, [{ schema: 'public' }])
})

t.test('a search_path without public on the database: Tessera still reads its tables', async (t) => {
  const db = connected(t, await tunedDatabase(t, { search_path: 'elsewhere' })).db
  t.same(await db.selectFrom('users').select('id').execute(), [])
})

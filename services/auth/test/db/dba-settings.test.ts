/**
 * Tessera on a database whose defaults a DBA changed (ALTER DATABASE … SET,
 * as ALTER ROLE … SET would): connect() sets on each connection what
 * Tessera's statements rely on (sessionSetup), so each of these settings,
 * which broke a start, a read or a lock wait, no longer reaches them; an
 * RSA key is generated outside any transaction, so an
 * idle_in_transaction_session_timeout does not end key work. Each test sets
 * them on its own database, dropped with it.
 */
import { join } from 'node:path'
import t, { type Test } from 'tap'
import pg from 'pg'
import { sql } from 'kysely'
import { connect, type Connection } from '../../src/db/connect.js'
import { migrateUp } from '../../src/db/migrate.js'
import { authenticateClient } from '../../src/clients/authenticate.js'
import { createClient } from '../../src/clients/register.js'
import { rotateClientSecret } from '../../src/clients/rotate-secret.js'
import { OAuthError } from '../../src/errors.js'
import { advanceKeys } from '../../src/keys/advance.js'
import { ensureSigningKey, lockKeys } from '../../src/keys/ensure.js'
import { rotateKeys } from '../../src/keys/rotate.js'
import { promoteKey } from '../../src/keys/transitions.js'
import { buildTestApp, login, signUp, testConfig } from '../helpers/app.js'
import { createTestDatabase, lockWaiters } from '../helpers/db.js'
import { cliKeyGenerations, databaseClockLead, generationsInsideStores, type KeyGeneration, keyStores, readKeyGenerations, recordKeyStores, watchKeyGenerations } from '../helpers/key-generations.js'
import { keyLifecycleEnv, runCli } from '../helpers/server.js'

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

t.test('jit on and jit_above_cost 0 on the database: every connection of the workers\' pools and of the CLI\'s runs with JIT off, and a statement is not compiled', async (t) => {
  // Postgres's own default is JIT on past a cost of 100,000; the embedded
  // Postgres has no LLVM, so only SHOW tells there. Where it has (Debian's
  // package), the plan says whether the statement was compiled.
  const url = await tunedDatabase(t, { jit: 'on', jit_above_cost: '0' })
  const plain = new pg.Client({ connectionString: url })
  await plain.connect()
  t.teardown(async () => { await plain.end() })
  t.same((await plain.query('SHOW jit')).rows, [{ jit: 'on' }], 'a connection of its own takes the database\'s JIT')
  for (const [who, statementTimeoutMs] of [['a worker', 10_000], ['the CLI', 0]] as const) {
    const { db } = connected(t, url, statementTimeoutMs)
    // Two at once, so the pool opens both of its connections.
    const seen = await Promise.all([1, 2].map(async () => await db.transaction().execute(async (trx) => {
      const jit = (await sql<{ jit: string }>`SHOW jit`.execute(trx)).rows[0]?.jit
      const { rows: [explained] } = await sql<{ 'QUERY PLAN': Array<Record<string, unknown>> }>`EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM refresh_tokens WHERE kid = 'k'`.execute(trx)
      return { jit, compiled: explained?.['QUERY PLAN'][0]?.JIT !== undefined }
    })))
    t.same(seen, [{ jit: 'off', compiled: false }, { jit: 'off', compiled: false }], who)
  }
})

// A 4096-bit key takes from a few hundred ms to seconds to generate: inside
// the transaction that holds the keys' lock, it held every other instance's
// key work that long, and a DBA's 100 ms timeout ended the connection
// ("Client has encountered a connection error"). Whether a generation ran
// inside a transaction that stored a key is what these tests check, from
// when each happened: a timeout short enough to catch every generation also
// ended a process the machine left unscheduled that long between two
// statements. The DBA's timeout stays, well above such a gap.
const IDLE_TIMEOUT = '5s'

/** The database's timeout, as a connection of the pool sees it. */
async function idleTimeout (db: Connection['db']): Promise<string | undefined> {
  return (await sql<{ timeout: string }>`SELECT current_setting('idle_in_transaction_session_timeout') AS timeout`.execute(db)).rows[0]?.timeout
}

/**
 * A database with a DBA's idle_in_transaction_session_timeout, and a client
 * that noted each key's storing transaction (helpers/key-generations.ts) and
 * tells which key generations ran inside one.
 */
async function idleLimitedDatabase (t: Test): Promise<{ url: string, overlappingStores: (generations: KeyGeneration[]) => Promise<unknown[]> }> {
  const url = await tunedDatabase(t, { idle_in_transaction_session_timeout: `'${IDLE_TIMEOUT}'` })
  const probe = new pg.Client({ connectionString: url })
  await probe.connect()
  t.teardown(async () => { await probe.end() })
  await recordKeyStores(probe)
  const lead = await databaseClockLead(probe)
  return { url, overlappingStores: async (generations) => generationsInsideStores(generations, await keyStores(probe), lead) }
}

t.test('idle_in_transaction_session_timeout, 4096-bit keys: tessera keys rotate, rotate --now and revoke succeed, each key generated before its transaction', async (t) => {
  const { url, overlappingStores } = await idleLimitedDatabase(t)
  t.equal(await idleTimeout(connected(t, url).db), IDLE_TIMEOUT)
  const log = join(t.testdir(), 'key-generations.jsonl')
  const env = { ...keyLifecycleEnv(url, { TESSERA_KEY_BITS: '4096' }), ...cliKeyGenerations(log) }
  const cli = async (...args: string[]): Promise<Record<string, unknown>> => {
    const res = await runCli([...args, '--json'], env)
    if (res.code !== 0) throw new Error(`tessera ${args.join(' ')} exited ${String(res.code)}: ${res.stderr}`)
    return JSON.parse(res.stdout) as Record<string, unknown>
  }
  const first = await cli('keys', 'rotate', '--now')
  t.match(first, { created: String, demoted: null }, 'a key made and signing, none before it')
  t.equal(first.promoted, first.created)
  const pending = await cli('keys', 'rotate')
  t.match(pending, { created: String, promoted: null })
  t.match(await cli('keys', 'rotate', '--now'), { created: null, promoted: pending.created, demoted: first.created }, 'the pending key signs')
  const revoked = await cli('keys', 'revoke', String(pending.created))
  t.match(revoked, { kid: pending.created, was: 'current', promoted: String }, 'a replacement made and signing')
  const keys = await cli('keys', 'list') as unknown as Array<{ kid: string, state: string, bits: number }>
  t.same(keys.map((k) => [k.kid, k.state, k.bits]).sort(), [
    [first.created, 'previous', 4096], [pending.created, 'revoked', 4096], [revoked.promoted, 'current', 4096]
  ].sort())
  const generations = readKeyGenerations(log)
  t.equal(generations.length, 3, 'the CLI processes generated the three keys stored')
  t.same(await overlappingStores(generations), [], 'none while a transaction storing a key was open')
})

t.test('idle_in_transaction_session_timeout, 4096-bit keys: the first start, the schedule, and a rotate --now whose pending key the schedule promoted while it waited, each key generated before its transaction', async (t) => {
  const { url, overlappingStores } = await idleLimitedDatabase(t)
  const generations: KeyGeneration[] = []
  t.teardown(watchKeyGenerations((generation) => { generations.push(generation) }))
  const config = testConfig({ TESSERA_KEY_BITS: '4096', TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEY_PUBLISH_LEAD: '10s', TESSERA_KEY_ROTATION: '60s' })
  const kek = config.kek ?? Buffer.alloc(0)
  const making = { kek, bits: config.keyBits }
  const db = connected(t, url).db
  t.equal(await idleTimeout(db), IDLE_TIMEOUT)
  const started = new Date()
  const k1 = await ensureSigningKey(db, kek, config.keyBits, started)
  t.type(k1, 'string', 'the first start made its key')
  const scheduled = await advanceKeys(db, making, config, new Date(started.getTime() + 3600_000))
  t.match(scheduled, [{ kind: 'created', kid: String }], 'the schedule made the next key')
  const k2 = scheduled?.[0]?.kid ?? ''

  // rotate --now sees k2 waiting, so generates nothing ahead; while it waits
  // for the lock, the holder (the schedule, in effect) promotes k2, and under
  // the lock it finds no key to promote: it makes one, generated with the
  // lock released, and promotes that.
  const holding = connect(url, 1)
  t.teardown(holding.close)
  await sql`SET idle_in_transaction_session_timeout = 0`.execute(holding.db)
  const watcher = new pg.Client({ connectionString: url })
  await watcher.connect()
  t.teardown(async () => { await watcher.end() })
  let rotating: ReturnType<typeof rotateKeys> | undefined
  await holding.db.transaction().execute(async (trx) => {
    await lockKeys(trx)
    rotating = rotateKeys(db, making, { immediate: true, clock: () => new Date(), who: OPERATOR })
    while (await lockWaiters(watcher) === 0) await new Promise((resolve) => setTimeout(resolve, 20))
    await promoteKey(trx, k2, new Date(), { actor: 'system' }, 'published for the lead time')
  })
  const rotated = await rotating
  t.match(rotated, { created: String, demoted: k2, pending: undefined })
  t.equal(rotated?.promoted, rotated?.created)
  const keys = await db.selectFrom('signing_keys').select(['kid', 'state', 'bits']).execute()
  t.same(keys.map((k) => [k.kid, k.state, k.bits]).sort(), [[k1, 'previous', 4096], [k2, 'previous', 4096], [rotated?.created, 'current', 4096]].sort())
  t.equal((await db.selectFrom('audit_events').select('id').where('type', '=', 'key.created').execute()).length, 3, 'one key.created per key stored')
  t.equal(generations.length, 3, 'three keys generated, none dropped')
  t.same(await overlappingStores(generations), [], 'none while a transaction storing a key was open')
})

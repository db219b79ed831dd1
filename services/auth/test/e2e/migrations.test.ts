import t from 'tap'
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { sql } from 'kysely'
import { FileMigrationProvider, Migrator } from 'kysely/migration'
import { runProcess } from '@tessera/testkit'
import { createTestDatabase, lockWaiters, testConnection } from '../helpers/db.js'
import { runCli, SERVER_ENTRY, startServer } from '../helpers/server.js'
import { migrateDown, schemaStanding } from '../../src/db/migrate.js'

// Under .ci/run with other work on the 2-core machine it came within 40 s of tap's default 180 (session 35), and tap's timeout runs no teardowns.
t.setTimeout(300_000)

const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations')

t.test('migrate up, status, down, up again through the CLI', async (t) => {
  const url = await createTestDatabase(t, { empty: true })
  // As the compose one-shot runs it: production, and no KEK.
  const env = { DATABASE_URL: url, NODE_ENV: 'production' }
  const before = await runCli(['migrate', 'status', '--json'], env)
  t.equal(before.code, 0, before.stderr)
  t.same(JSON.parse(before.stdout).map((m: { applied_at: unknown }) => m.applied_at), [null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null])

  const up = await runCli(['migrate', 'up'], env)
  t.equal(up.code, 0, up.stderr)
  t.match(up.stdout, /applied 0001_initial/)
  t.match(up.stdout, /0002_refresh_decision/)
  const again = await runCli(['migrate', 'up'], env)
  t.equal(again.stdout, 'already up to date\n', 'up twice is a no-op')

  const status = await runCli(['migrate', 'status'], env)
  t.match(status.stdout, /0001_initial\s+\d{4}-\d\d-\d\dT/)
  t.notMatch(status.stdout, /pending/)

  const connection = await testConnection(t, url)
  const functions = async (name: string): Promise<number | undefined> =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_proc WHERE proname = ${name}`.execute(connection.db)).rows[0]?.n
  const tables = async (name: string): Promise<number | undefined> =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name = ${name}`.execute(connection.db)).rows[0]?.n
  const columns = async (table: string, name: string): Promise<number | undefined> =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = ${table} AND column_name = ${name}`.execute(connection.db)).rows[0]?.n
  const indexCount = async (name: string): Promise<number | undefined> =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = ${name}`.execute(connection.db)).rows[0]?.n
  const triggers = async (): Promise<number | undefined> =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'clients'::regclass AND NOT tgisinternal`.execute(connection.db)).rows[0]?.n
  t.equal(await functions('tessera_refresh_grant'), 1, 'up created the refresh grant function')
  t.equal(await functions('tessera_refresh_decision'), 0, 'and dropped the decision function it replaces')
  t.equal(await functions('tessera_client_refresh_decision'), 0, 'and its client-checking wrapper')
  const refreshTokenChecks = async (): Promise<string[]> =>
    (await sql<{ name: string }>`SELECT conname AS name FROM pg_constraint WHERE conrelid = 'refresh_tokens'::regclass AND contype = 'f'
      UNION ALL SELECT indexname FROM pg_indexes WHERE tablename = 'refresh_tokens' ORDER BY 1`.execute(connection.db)).rows.map((r) => r.name)
  t.same(await refreshTokenChecks(), ['refresh_tokens_expires_at', 'refresh_tokens_kid', 'refresh_tokens_pkey', 'refresh_tokens_session', 'refresh_tokens_session_id_fkey'],
    'a refresh writes through one foreign key and four indexes')
  const refused = await runCli(['migrate', 'down'], env)
  t.equal(refused.code, 2, 'down without --yes is a usage error')
  t.equal(refused.stderr, 'tessera: migrate down drops the newest migration\'s tables and their data: run `tessera migrate down --yes` to go ahead\n')
  t.equal(await tables('clients'), 1, 'and reverted nothing')
  /** The definition of the one index so named: matched as a list, a second index of the name would pass. */
  const indexDef = async (name: string): Promise<string> => {
    const defs = (await sql<{ def: string }>`SELECT indexdef AS def FROM pg_indexes WHERE indexname = ${name}`.execute(connection.db)).rows.map((r) => r.def)
    t.equal(defs.length, 1, `one index named ${name}`)
    return defs[0] ?? ''
  }
  const fillfactors = async (): Promise<string[]> =>
    (await sql<{ options: string[] | null }>`SELECT reloptions AS options FROM pg_class WHERE relname IN ('refresh_tokens', 'sessions') ORDER BY relname`.execute(connection.db)).rows.map((r) => String(r.options))
  t.match(await indexDef('sessions_expires_at'), /USING brin \(expires_at\)/, 'the slide of a session changes no btree-indexed column')
  t.same(await fillfactors(), ['fillfactor=80', 'fillfactor=80'], 'and its pages, and the tokens\', leave room for HOT updates')
  t.equal(await functions('tessera_count_login_attempt'), 1, 'up created the login\'s attempt function')
  t.equal(await functions('tessera_start_login'), 1, 'and its start function')
  t.match(await indexDef('refresh_tokens_kid'), /USING brin \(kid text_bloom_ops/, 'inserting a token adds no btree entry for its kid')
  const revertNewest = async (name: string): Promise<void> => {
    const reverted = await runCli(['migrate', 'down', '--yes', '--json'], env)
    t.same(JSON.parse(reverted.stdout), { reverted: [name] }, `down reverted ${name}`)
  }
  t.equal(await triggers(), 2, 'up created the triggers that notify client changes')
  const startBody = async (): Promise<string> =>
    (await sql<{ body: string }>`SELECT prosrc AS body FROM pg_proc WHERE proname = 'tessera_start_login'`.execute(connection.db)).rows[0]?.body ?? ''
  t.match(await startBody(), 'PERFORM FROM clients c WHERE c.client_id = session_client AND c.disabled_at IS NULL', 'up: a login checks its client')
  t.equal(await columns('signing_keys', 'sessions_swept_at'), 1, 'up: a revoked key records the sweep of its sessions')
  t.match(await indexDef('sessions_user'), /ON public\.sessions USING btree \(user_id, revoked_at\)$/, 'up: every session by user, so a user\'s delete cascades by index')
  t.match(await indexDef('audit_events_username'), /USING btree \(username\) WHERE \(username IS NOT NULL\)/, 'and the audit events by name')
  const grantBody = async (): Promise<string> =>
    (await sql<{ body: string }>`SELECT prosrc AS body FROM pg_proc WHERE proname = 'tessera_refresh_grant'`.execute(connection.db)).rows[0]?.body ?? ''
  t.match(await startBody(), "'password' = ANY (c.grants) AND string_to_array(session_scope, ' ') <@ c.scopes AND session_resources <@ c.resources", 'up: a login checks that its client still allows what it was granted')
  t.match(await startBody(), /c\.resources\s+FOR SHARE;/, 'under a row lock')
  t.equal(await functions('tessera_refresh_grants'), 1, 'up: refreshes decided together')
  await revertNewest('0018_refresh_grants_together')
  t.equal(await functions('tessera_refresh_grants'), 0, 'down dropped it')
  await revertNewest('0017_login_client_registration')
  t.match(await startBody(), 'PERFORM FROM clients c WHERE c.client_id = session_client AND c.disabled_at IS NULL FOR SHARE;', 'down: 0013\'s check, as before')
  t.notMatch(await startBody(), 'c.scopes', 'and nothing of 0017\'s')
  t.equal(await functions('tessera_start_login'), 1, 'one function still, replaced in place')
  t.match(await grantBody(), "decision := 'reuse by another client'", 'up: another client\'s token used and past the grace is reuse')
  await revertNewest('0016_reuse_by_another_client')
  t.notMatch(await grantBody(), 'reuse by another client', 'down: another client\'s token is refused whatever its state, as before')
  t.equal(await functions('tessera_refresh_grant'), 1, 'one function still, replaced in place')
  await revertNewest('0015_user_lookups')
  t.match(await indexDef('sessions_user_live'), /USING btree \(user_id\) WHERE \(revoked_at IS NULL\)/, 'down brought back the index of live sessions')
  t.equal(await indexCount('sessions_user'), 0, 'and dropped the new ones')
  t.equal(await indexCount('audit_events_username'), 0)
  await revertNewest('0014_revoked_key_sweep')
  t.equal(await columns('signing_keys', 'sessions_swept_at'), 0, 'down dropped it')
  await revertNewest('0013_login_client_check')
  t.notMatch(await startBody(), 'FROM clients', 'down: it checks the user alone, as before')
  // 0012 rewrites the rows of failed logins whose username no user could have, kept as typed before it.
  await connection.db.insertInto('audit_events').values([{ type: 'login.failed', username: 'my secret pass!' }, { type: 'login.failed', username: 'alice' }]).execute()
  await connection.db.insertInto('login_throttle').values([{ username: 'my secret pass!', failures: 1, last_failed_at: new Date() }, { username: 'alice', failures: 1, last_failed_at: new Date() }]).execute()
  await revertNewest('0012_redact_invalid_usernames')
  t.equal((await runCli(['migrate', 'up'], env)).code, 0)
  t.same((await connection.db.selectFrom('audit_events').select('username').where('type', '=', 'login.failed').orderBy('id').execute()).map((r) => r.username), ['#invalid', 'alice'], 'up: the text is gone from the audit rows, a real name stays')
  t.same((await connection.db.selectFrom('login_throttle').select('username').execute()).map((r) => r.username), ['alice'], 'and from the back-off')
  await connection.db.deleteFrom('audit_events').execute()
  await connection.db.deleteFrom('login_throttle').execute()
  await revertNewest('0018_refresh_grants_together')
  await revertNewest('0017_login_client_registration')
  await revertNewest('0016_reuse_by_another_client')
  await revertNewest('0015_user_lookups')
  await revertNewest('0014_revoked_key_sweep')
  await revertNewest('0013_login_client_check')
  await revertNewest('0012_redact_invalid_usernames')

  // 0011 marks a user already there imported only on positive evidence: no user.created row and a hash not yet Tessera's.
  const users = await connection.db.insertInto('users').values([
    { username: 'signed-up', password_hash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA' },
    { username: 'imported', password_hash: 'pbkdf2_sha256$260000$salt$aGFzaA==' },
    { username: 'logged-in', password_hash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA' }
  ]).returning(['id', 'username']).execute()
  await connection.db.insertInto('audit_events').values({ type: 'user.created', user_id: users[0]?.id ?? '' }).execute()
  await revertNewest('0011_users_imported_at')
  t.equal((await runCli(['migrate', 'up'], env)).code, 0)
  const imported = Object.fromEntries((await connection.db.selectFrom('users').select(['username', 'imported_at']).execute()).map((u) => [u.username, u.imported_at !== null]))
  t.same(imported, { 'signed-up': false, imported: true, 'logged-in': false }, 'up: only a user with no user.created row and a Django hash still is taken for imported; when unsure, not')
  await connection.db.deleteFrom('audit_events').execute()
  await connection.db.deleteFrom('users').execute()
  await revertNewest('0018_refresh_grants_together')
  await revertNewest('0017_login_client_registration')
  await revertNewest('0016_reuse_by_another_client')
  await revertNewest('0015_user_lookups')
  await revertNewest('0014_revoked_key_sweep')
  await revertNewest('0013_login_client_check')
  await revertNewest('0012_redact_invalid_usernames')
  await revertNewest('0011_users_imported_at')
  t.equal(await columns('users', 'imported_at'), 0, 'down dropped the columns')
  t.equal(await columns('users', 'imported_as'), 0)
  const countBody = async (): Promise<string> =>
    (await sql<{ body: string }>`SELECT prosrc AS body FROM pg_proc WHERE proname = 'tessera_count_login_attempt'`.execute(connection.db)).rows[0]?.body ?? ''
  t.match(await countBody(), 'WHEN coalesce(lt.blocked_until, lt.last_failed_at) < stale', 'up: a streak is stale from the end of its block')
  await revertNewest('0010_login_backoff_streak')
  t.match(await countBody(), 'WHEN lt.last_failed_at < stale', 'down: from its last failure, as before')
  await revertNewest('0009_client_changes')
  t.equal(await triggers(), 0, 'down dropped them')
  t.equal(await functions('tessera_notify_client_change'), 0, 'and their function')
  await revertNewest('0008_login_round_trips')
  t.equal(await functions('tessera_count_login_attempt'), 0, 'down dropped the login\'s attempt function')
  t.equal(await functions('tessera_start_login'), 0, 'and its start function')
  await revertNewest('0007_refresh_token_kid_brin')
  t.match(await indexDef('refresh_tokens_kid'), /USING btree \(kid\)/, 'down brought back the btree on kid')
  await revertNewest('0006_refresh_writes')
  t.equal(await functions('tessera_refresh_grant'), 1, 'down kept the refresh grant function (0005\'s again)')
  t.match(await indexDef('sessions_expires_at'), /USING btree \(expires_at\)/, 'and brought back the btree index')
  t.same(await fillfactors(), ['null', 'null'], 'and the default fillfactor')
  await revertNewest('0005_refresh_grant')
  t.equal(await functions('tessera_refresh_grant'), 0, 'down dropped the refresh grant function')
  t.equal(await functions('tessera_refresh_decision'), 1, 'and brought back the decision function')
  t.equal(await functions('tessera_client_refresh_decision'), 1, 'and its wrapper')
  t.same(await refreshTokenChecks(), ['refresh_tokens_expires_at', 'refresh_tokens_kid', 'refresh_tokens_kid_fkey', 'refresh_tokens_parent', 'refresh_tokens_parent_jti_fkey',
    'refresh_tokens_pkey', 'refresh_tokens_session', 'refresh_tokens_session_id_fkey'], 'and the foreign keys and index it dropped')
  await revertNewest('0004_clients')
  t.equal(await tables('clients'), 0, 'down removed the clients table')
  t.equal(await functions('tessera_client_refresh_decision'), 0, 'and the wrapper')
  await revertNewest('0002_refresh_decision')
  t.equal(await functions('tessera_refresh_decision'), 0, 'down dropped the function')
  await revertNewest('0001_initial')
  t.equal(await tables('users'), 0, 'down removed the tables')
  t.equal((await runCli(['migrate', 'up'], env)).code, 0)
  const bad = await runCli(['migrate', 'sideways'], env)
  t.equal(bad.code, 2)
  t.equal(bad.stderr, 'tessera: usage: tessera migrate up | status | down --yes\n')
})

/** `migration` replaces `fn` in place; its down puts back `before`'s definition, character for character. */
function downRestoresFunction (fn: string, before: string, migration: string): void {
  t.test(`${migration.slice(0, 4)} down restores ${before.slice(0, 4)}'s ${fn} exactly`, async (t) => {
    const { db } = await testConnection(t, await createTestDatabase(t, { empty: true }))
    const migrator = new Migrator({ db, provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }) })
    const definition = async (): Promise<string> =>
      (await sql<{ def: string }>`SELECT pg_get_functiondef(${fn}::regproc) AS def`.execute(db)).rows[0]?.def ?? ''
    t.equal((await migrator.migrateTo(before)).error, undefined)
    const asBefore = await definition()
    t.equal((await migrator.migrateTo(migration)).error, undefined)
    t.not(await definition(), asBefore, 'up changed it')
    t.same(await migrateDown(db), [migration])
    t.equal(await definition(), asBefore, `down: ${before.slice(0, 4)}'s definition, character for character`)
  })
}

downRestoresFunction('tessera_refresh_grant', '0015_user_lookups', '0016_reuse_by_another_client')
downRestoresFunction('tessera_start_login', '0016_reuse_by_another_client', '0017_login_client_registration')

t.test('two migrate up at once apply each migration once', async (t) => {
  const url = await createTestDatabase(t, { empty: true })
  const [a, b] = await Promise.all([runCli(['migrate', 'up', '--json'], { DATABASE_URL: url }), runCli(['migrate', 'up', '--json'], { DATABASE_URL: url })])
  t.equal(a.code, 0, a.stderr)
  t.equal(b.code, 0, b.stderr)
  const applied = [...JSON.parse(a.stdout).applied, ...JSON.parse(b.stdout).applied]
  t.same(applied.sort(), ['0001_initial', '0002_refresh_decision', '0004_clients', '0005_refresh_grant', '0006_refresh_writes', '0007_refresh_token_kid_brin', '0008_login_round_trips', '0009_client_changes', '0010_login_backoff_streak', '0011_users_imported_at', '0012_redact_invalid_usernames', '0013_login_client_check', '0014_revoked_key_sweep', '0015_user_lookups', '0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'], 'exactly one process applied each')
})

t.test('migrate up failed by instances\' locks says which migration, that it changed nothing, what stays applied, and to run it again', async (t) => {
  const url = await createTestDatabase(t)
  const { db, pool } = await testConnection(t, url)
  for (let i = 0; i < 5; i++) await runCli(['migrate', 'down', '--yes'], { DATABASE_URL: url })
  t.same((await schemaStanding(db)).pending, ['0014_revoked_key_sweep', '0015_user_lookups', '0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'])
  const live = await pool.connect()
  t.teardown(() => live.release())
  const watcher = await pool.connect()
  t.teardown(() => watcher.release())
  const indexes = async (): Promise<string[]> =>
    (await sql<{ name: string }>`SELECT indexname AS name FROM pg_indexes WHERE indexname IN ('sessions_user_live', 'sessions_user', 'audit_events_username') ORDER BY 1`.execute(db)).rows.map((r) => r.name)
  const said = (name: string, done: string, why: string): string => `${name} was not applied: ${why}. Its transaction was rolled back, so it changed nothing${done}. ` +
    `Run \`tessera migrate up\` again, at a quieter moment if this comes back: it goes on from ${name} (docs/operators.md, "Upgrading")\n`

  // A real deadlock: the live transaction writes audit_events and then reads
  // sessions (no transaction of Tessera's does, in that order), while 0015
  // holds sessions and waits for audit_events. The live one waits longer
  // before it checks for a deadlock, so Postgres fails the migration.
  await live.query('BEGIN')
  await live.query("SET LOCAL deadlock_timeout = '60s'")
  await live.query("INSERT INTO audit_events (type) VALUES ('user.created')")
  const migrating = runCli(['migrate', 'up'], { DATABASE_URL: url })
  while (await lockWaiters(watcher) === 0) await new Promise((resolve) => setTimeout(resolve, 20))
  const read = await live.query('SELECT count(*) FROM sessions').then(() => 'read', (error: unknown) => error)
  await live.query('COMMIT')
  const deadlocked = await migrating
  t.equal(read, 'read', 'the live transaction went on')
  t.same([deadlocked.code, deadlocked.stdout], [1, ''], 'exit 1, as any failed command')
  t.equal(deadlocked.stderr, 'tessera: ' + said('0015_user_lookups', '; applied before it, and still so: 0014_revoked_key_sweep',
    'deadlock detected (Postgres broke a deadlock between it and transactions of instances serving meanwhile by failing it)'))
  t.same((await schemaStanding(db)).pending, ['0015_user_lookups', '0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'], '0014 stays applied, 0015 does not, nor what comes after it')
  t.same(await indexes(), ['sessions_user_live'], 'and 0015 changed nothing')

  // A lock wait past lock_timeout: the live transaction reads sessions, which 0015 wants whole.
  await live.query('BEGIN')
  await live.query('SELECT count(*) FROM sessions')
  const timedOut = await runCli(['migrate', 'up'], { DATABASE_URL: `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent('-c lock_timeout=200')}` })
  await live.query('COMMIT')
  t.same([timedOut.code, timedOut.stdout, timedOut.stderr], [1, '', 'tessera: ' + said('0015_user_lookups', '',
    'canceling statement due to lock timeout (it waited longer than lock_timeout for a table that transactions of instances serving meanwhile held)')], 'lock_timeout: the same, nothing applied before it')
  t.same(await indexes(), ['sessions_user_live'], 'and it changed nothing')

  const again = await runCli(['migrate', 'up'], { DATABASE_URL: url })
  t.same([again.code, again.stdout, again.stderr], [0, 'applied 0015_user_lookups, 0016_reuse_by_another_client, 0017_login_client_registration, 0018_refresh_grants_together\n', ''], 'run again at a quiet moment, it applies')
  t.same(await indexes(), ['audit_events_username', 'sessions_user'])
})

t.test('the schema enforces its constraints', async (t) => {
  const { db } = await testConnection(t)
  const user = await db.insertInto('users').values({ username: 'quinn', password_hash: 'x' }).returning('id').executeTakeFirstOrThrow()
  const rejects = async (name: string, query: Promise<unknown>): Promise<void> => {
    await t.rejects(query, { code: /^23/ }, name)
  }
  await rejects('an upper-case username', db.insertInto('users').values({ username: 'Quinn', password_hash: 'x' }).execute())
  await rejects('a duplicate username', db.insertInto('users').values({ username: 'quinn', password_hash: 'x' }).execute())
  const key = { bits: 2048, public_jwk: JSON.stringify({ kty: 'RSA' }), private_key_enc: Buffer.from('x') }
  await rejects('an unknown key state', db.insertInto('signing_keys').values({ ...key, kid: 'k0', state: 'active' as 'current' }).execute())
  await rejects('a current key without a private half', db.insertInto('signing_keys').values({ ...key, kid: 'k1', state: 'current', private_key_enc: null }).execute())
  await rejects('a public JWK with a private member', db.insertInto('signing_keys').values({ ...key, kid: 'k2', state: 'next', public_jwk: JSON.stringify({ kty: 'RSA', d: 'secret' }) }).execute())
  await db.insertInto('signing_keys').values({ ...key, kid: 'k3', state: 'current' }).execute()
  await rejects('a second current key', db.insertInto('signing_keys').values({ ...key, kid: 'k4', state: 'current' }).execute())
  const now = new Date()
  const session = { user_id: user.id, client_id: 'c', scope: 's', created_at: now, last_used_at: now, expires_at: now, absolute_expires_at: now }
  await rejects('a session ended without a reason', db.insertInto('sessions').values({ ...session, id: '00000000-0000-4000-8000-000000000001', revoked_at: now }).execute())
  await rejects('an unknown end reason', db.insertInto('sessions').values({ ...session, id: '00000000-0000-4000-8000-000000000002', revoked_at: now, revoke_reason: 'bored' as 'logout' }).execute())
  await rejects('a session for no user', db.insertInto('sessions').values({ ...session, id: '00000000-0000-4000-8000-000000000003', user_id: '00000000-0000-4000-8000-00000000000f' }).execute())
  await rejects('a bad audit type', db.insertInto('audit_events').values({ type: 'Login Failed' }).execute())
})

t.test('an instance on a schema behind its build refuses to start; on one ahead of it, it serves and says so', async (t) => {
  const url = await createTestDatabase(t)
  const connection = await testConnection(t, url)
  const env = { PATH: process.env.PATH ?? '', PORT: '0', DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }

  const [newest] = (await sql<{ name: string }>`DELETE FROM kysely_migration WHERE name = (SELECT max(name) FROM kysely_migration) RETURNING name`.execute(connection.db)).rows
  const behind = await runProcess(process.execPath, [SERVER_ENTRY], { env })
  t.equal(behind.code, 1, 'a build newer than its schema does not start')
  t.match(behind.stderr, `the database schema is behind (${newest?.name ?? ''} pending): run \`tessera migrate up\``)

  await sql`INSERT INTO kysely_migration (name, timestamp) VALUES (${newest?.name ?? ''}, now()::text), ('9999_from_a_newer_build', now()::text)`.execute(connection.db)
  const ahead = await startServer(t, env)
  t.match(ahead.output(), /"level":40,[^\n]*"migrations":\["9999_from_a_newer_build"\][^\n]*"msg":"the database schema is ahead of this build \(9999_from_a_newer_build applied by a newer one\)/, 'an older build serves, and warns')
  t.equal((await fetch(`${ahead.url}/readyz`)).status, 200)
  t.equal(await ahead.stop(), 0)

  // This build's CLI on the newer schema, as a deployment that rolled its code back runs its migrate step.
  const cli = { DATABASE_URL: url }
  const up = await runCli(['migrate', 'up'], cli)
  t.same([up.code, up.stdout, up.stderr], [0, 'nothing to apply: the schema is ahead of this build (9999_from_a_newer_build applied by a newer one)\n', ''], 'migrate up leaves it, and says why, instead of failing the deployment')
  const status = await runCli(['migrate', 'status', '--json'], cli)
  t.match(JSON.parse(status.stdout).at(-1), { name: '9999_from_a_newer_build', in_this_build: false }, 'status lists what a newer build applied')
  t.match((await runCli(['migrate', 'status'], cli)).stdout, /9999_from_a_newer_build \(not in this build\)\s+\d{4}-/)
  const down = await runCli(['migrate', 'down', '--yes'], cli)
  t.same([down.code, down.stderr], [1, 'tessera: migrations a newer build applied (9999_from_a_newer_build) are not in this build: revert them with the build that applied them\n'], 'down refuses, naming what it cannot revert')
  await sql`DELETE FROM kysely_migration WHERE name = ${newest?.name ?? ''}`.execute(connection.db)
  const mixed = await runCli(['migrate', 'up'], cli)
  t.same([mixed.code, mixed.stderr], [1, `tessera: the database has migrations this build lacks (9999_from_a_newer_build) and lacks some of this build's (${newest?.name ?? ''}): migrate with the build that applied 9999_from_a_newer_build\n`], 'a schema both ahead and behind is refused: neither build can bring it level')
})

/**
 * The migrator against a schema a newer build migrated: this build applies
 * nothing and says why, reverts nothing of the newer build's, lists what it
 * does not know, and refuses a schema both ahead and behind; Tessera's tables
 * in another schema than public are named, never made anew; a migration
 * failed by other sessions' locks is said as such. Through the CLI:
 * test/e2e/migrations.test.ts and test/e2e/schema-elsewhere.test.ts.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { sql } from 'kysely'
import { MigrationGaveWayError, migrateDown, migrateUp, migrationStatus, refuseSchemaElsewhere, schemaStanding, SchemaElsewhereError, SchemaNewerError } from '../../src/db/migrate.js'
import { createTestDatabase, lockWaiters, testConnection, testEnv } from '../helpers/db.js'

t.test('a database never migrated: everything pending, nothing newer, and no table read that is not there', async (t) => {
  const { db } = await testConnection(t, await createTestDatabase(t, { empty: true }))
  const standing = await schemaStanding(db)
  t.ok(standing.pending.length > 0)
  t.same(standing.unknownHere, [])
  t.ok((await migrationStatus(db)).every((m) => m.appliedAt === null && m.inThisBuild))
})

t.test('a schema a newer build migrated', async (t) => {
  const { db } = await testConnection(t)
  await sql`INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_from_a_newer_build', ${new Date('2026-12-01T00:00:00Z').toISOString()}), ('9999_written_by_hand', 'yesterday')`.execute(db)
  t.same(await migrateUp(db), [], 'up applies nothing')
  await t.rejects(migrateDown(db), new SchemaNewerError('migrations a newer build applied (9999_from_a_newer_build, 9999_written_by_hand) are not in this build: revert them with the build that applied them'), 'down reverts nothing of it')
  const newer = (await migrationStatus(db)).filter((m) => !m.inThisBuild)
  t.same(newer, [{ name: '9999_from_a_newer_build', appliedAt: new Date('2026-12-01T00:00:00Z'), inThisBuild: false }, { name: '9999_written_by_hand', appliedAt: null, inThisBuild: false }], 'status lists it, with its date when Kysely wrote it')

  const [newest] = (await sql<{ name: string }>`DELETE FROM kysely_migration WHERE name = (SELECT max(name) FROM kysely_migration WHERE name < '9') RETURNING name`.execute(db)).rows
  await t.rejects(migrateUp(db), { name: 'SchemaNewerError', message: `the database has migrations this build lacks (9999_from_a_newer_build, 9999_written_by_hand) and lacks some of this build's (${newest?.name ?? ''}): migrate with the build that applied 9999_from_a_newer_build, 9999_written_by_hand` }, 'ahead and behind at once: refused')
})

t.test('an upgrade across two migrations that lock different tables, under a live transaction holding one and then wanting the other: both finish', async (t) => {
  // An instance's refresh reads users and then writes refresh_tokens. Applied
  // in one transaction, 0007 (refresh_tokens, ACCESS EXCLUSIVE) held its lock
  // while 0011 waited for users behind that refresh: Postgres broke the cycle
  // by failing the upgrade with "deadlock detected", every time under load.
  const { db, pool } = await testConnection(t)
  while ((await migrationStatus(db)).find((m) => m.name === '0007_refresh_token_kid_brin')?.appliedAt != null) await migrateDown(db)
  const pending = (await schemaStanding(db)).pending
  const live = await pool.connect()
  t.teardown(() => live.release())
  const watcher = await pool.connect()
  t.teardown(() => watcher.release())

  await live.query('BEGIN')
  await live.query('SELECT count(*) FROM users')
  const migrating = migrateUp(db).then((applied) => ({ applied }), (error: unknown) => ({ error }))
  while (await lockWaiters(watcher) === 0) await new Promise((resolve) => setTimeout(resolve, 20))
  const read = await live.query('SELECT count(*) FROM refresh_tokens').then(() => 'read', (error: unknown) => error)
  await live.query('COMMIT')

  t.equal(read, 'read', 'the live transaction reads refresh_tokens, which 0007 no longer holds')
  t.same(await migrating, { applied: pending }, 'every pending migration applied')
  t.same((await schemaStanding(db)).pending, [])
})

t.test('0015 up and down under a live transaction that reads sessions and then writes them, as a refresh does: both finish', async (t) => {
  // tessera_refresh_grant reads the session, then slides it. 0015 built
  // sessions_user first, holding SHARE on sessions, and then dropped
  // sessions_user_live, which wants ACCESS EXCLUSIVE (its down the same, the
  // other way): the refresh waited for the SHARE, the drop for the refresh's
  // read, and Postgres failed one of them as a deadlock (seen upgrading under
  // load: the upgrade, 2 tries in 3).
  const { db, pool } = await testConnection(t)
  while ((await migrationStatus(db)).find((m) => m.name === '0015_user_lookups')?.appliedAt != null) await migrateDown(db)
  const live = await pool.connect()
  t.teardown(() => live.release())
  const watcher = await pool.connect()
  t.teardown(() => watcher.release())

  const beside = async (migrate: () => Promise<string[]>): Promise<{ wrote: unknown, migrated: unknown }> => {
    await live.query('BEGIN')
    await live.query('SELECT count(*) FROM sessions')
    const migrating = migrate().then((names) => ({ names }), (error: unknown) => ({ error }))
    while (await lockWaiters(watcher) === 0) await new Promise((resolve) => setTimeout(resolve, 20))
    const wrote = await live.query('UPDATE sessions SET last_used_at = last_used_at WHERE false').then(() => 'wrote', (error: unknown) => error)
    await live.query('COMMIT')
    return { wrote, migrated: await migrating }
  }
  t.same(await beside(async () => await migrateUp(db)), { wrote: 'wrote', migrated: { names: ['0015_user_lookups', '0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'] } }, 'up: the live transaction writes the sessions it read, and 0015 applies (and the newer ones after it)')
  t.same(await migrateDown(db), ['0018_refresh_grants_together'], 'the newer ones reverted first')
  t.same(await migrateDown(db), ['0017_login_client_registration'])
  t.same(await migrateDown(db), ['0016_reuse_by_another_client'])
  t.same(await beside(async () => await migrateDown(db)), { wrote: 'wrote', migrated: { names: ['0015_user_lookups'] } }, 'down: the same, and 0015 is reverted')
})

/** Kysely's migration lock (kysely/dist/dialect/postgres/postgres-adapter.js): a session-level advisory lock on this id. */
const KYSELY_MIGRATION_LOCK = '3853314791062309107'

t.test('a newer build that migrates between the check for one and Kysely\'s own read: said as the check says it, not as "corrupted migrations"', async (t) => {
  const { db, pool } = await testConnection(t)
  const live = await pool.connect()
  t.teardown(() => live.release())
  const watcher = await pool.connect()
  t.teardown(() => watcher.release())

  const newerMigratesMeanwhile = async <T>(migrate: () => Promise<T>): Promise<{ value: T } | { error: unknown }> => {
    await live.query('SELECT pg_advisory_lock($1)', [KYSELY_MIGRATION_LOCK])
    const migrating = migrate().then((value) => ({ value }), (error: unknown) => ({ error }))
    while (await lockWaiters(watcher) === 0) await new Promise((resolve) => setTimeout(resolve, 20))
    await live.query("INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_from_a_newer_build', $1)", [new Date().toISOString()])
    await live.query('SELECT pg_advisory_unlock($1)', [KYSELY_MIGRATION_LOCK])
    return await migrating
  }

  t.same(await newerMigratesMeanwhile(async () => await migrateUp(db)), { value: [] }, 'up, with nothing of this build pending: applies nothing, as when the newer build came first')
  await sql`DELETE FROM kysely_migration WHERE name = '9999_from_a_newer_build'`.execute(db)
  const down = await newerMigratesMeanwhile(async () => await migrateDown(db))
  t.match(down, { error: new SchemaNewerError('migrations a newer build applied (9999_from_a_newer_build) are not in this build: revert them with the build that applied them') }, 'down: refused in the words of the check')
  t.same((await schemaStanding(db)).pending, [], 'nothing reverted')
})

t.test('Tessera\'s tables in a schema other than public: every way in refuses, naming it and what moves it, and makes nothing in public', async (t) => {
  const { db } = await testConnection(t, await createTestDatabase(t, { empty: true }))
  const tesseraIn = async (schema: string): Promise<void> => {
    await sql`CREATE SCHEMA ${sql.id(schema)}`.execute(db)
    await sql`CREATE TABLE ${sql.id(schema, 'kysely_migration')} (name text)`.execute(db)
    await sql`CREATE TABLE ${sql.id(schema, 'signing_keys')} (kid text)`.execute(db)
  }
  const advice = (found: string, move: string): string => `Tessera's tables are in ${found}, not in public, where this build reads them (each connection sets search_path = public): nothing was done. With every instance stopped, as a superuser or the owner of both schemas, put it in public's place: \`${move}\` (docs/operators.md, "Upgrading")`

  await sql`CREATE SCHEMA notes`.execute(db)
  await sql`CREATE TABLE notes.kysely_migration (name text)`.execute(db)
  t.same((await schemaStanding(db)).unknownHere, [], 'a migrations table without signing_keys beside it (notes\') is not Tessera\'s')

  await tesseraIn('tessera')
  const one = new SchemaElsewhereError(['tessera'], true)
  t.equal(one.message, advice('schema tessera', 'BEGIN; DROP SCHEMA public; ALTER SCHEMA tessera RENAME TO public; COMMIT;'))
  await t.rejects(migrateUp(db), one, 'up')
  await t.rejects(migrateDown(db), one, 'down')
  await t.rejects(migrationStatus(db), one, 'status')
  t.same((await sql<{ made: string | null }>`SELECT to_regclass('public.kysely_migration')::text AS made`.execute(db)).rows, [{ made: null }], 'no migrations table made in public')

  await tesseraIn('Old Tessera')
  await t.rejects(migrateUp(db), new SchemaElsewhereError(['"Old Tessera"', 'tessera'], true), 'two: both named, quoted as SQL wants them')
  t.equal(new SchemaElsewhereError(['"Old Tessera"', 'tessera'], true).message, advice('schemas "Old Tessera", tessera', 'BEGIN; DROP SCHEMA public; ALTER SCHEMA <the one this deployment used> RENAME TO public; COMMIT;'))

  await sql`DROP SCHEMA "Old Tessera" CASCADE`.execute(db)
  await sql`DROP SCHEMA public`.execute(db)
  await t.rejects(migrateUp(db), { name: 'SchemaElsewhereError', message: advice('schema tessera', 'ALTER SCHEMA tessera RENAME TO public;') }, 'no public schema: the rename alone')
})

t.test('a migration that waited past lock_timeout behind a live transaction: said as such, what went before it kept, nothing of its own', async (t) => {
  const url = await createTestDatabase(t)
  const { db, pool } = await testConnection(t, `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent('-c lock_timeout=200')}`)
  for (let i = 0; i < 5; i++) await migrateDown(db)
  t.same((await schemaStanding(db)).pending, ['0014_revoked_key_sweep', '0015_user_lookups', '0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'])
  const live = await pool.connect()
  t.teardown(() => live.release())
  const timedOut = 'canceling statement due to lock timeout (it waited longer than lock_timeout for a table that transactions of instances serving meanwhile held)'

  // The live transaction reads sessions, which 0015 locks whole.
  await live.query('BEGIN')
  await live.query('SELECT count(*) FROM sessions')
  const up = await migrateUp(db).then((applied) => ({ applied }), (error: unknown) => ({ error }))
  await live.query('COMMIT')
  t.match(up, { error: MigrationGaveWayError })
  t.match(up, {
    error: {
      code: 'ERR_MIGRATION_GAVE_WAY',
      message: `0015_user_lookups was not applied: ${timedOut}. Its transaction was rolled back, so it changed nothing; applied before it, and still so: 0014_revoked_key_sweep. Run \`tessera migrate up\` again, at a quieter moment if this comes back: it goes on from 0015_user_lookups (docs/operators.md, "Upgrading")`,
      cause: { code: '55P03' }
    }
  })
  t.same((await schemaStanding(db)).pending, ['0015_user_lookups', '0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'], '0014 stays applied, 0015 does not')

  t.same(await migrateUp(db), ['0015_user_lookups', '0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'], 'at a quiet moment, applied')
  await migrateDown(db)
  await migrateDown(db)
  await migrateDown(db)
  await live.query('BEGIN')
  await live.query('SELECT count(*) FROM sessions')
  const down = await migrateDown(db).then((reverted) => ({ reverted }), (error: unknown) => ({ error }))
  await live.query('COMMIT')
  t.match(down, { error: { name: 'MigrationGaveWayError', message: `0015_user_lookups was not reverted: ${timedOut}. Its transaction was rolled back, so it changed nothing. Run \`tessera migrate down --yes\` again, at a quieter moment if this comes back (docs/operators.md, "Upgrading")` } }, 'down: the same, in its own words')
  t.same((await schemaStanding(db)).pending, ['0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'], '0015 still applied')
})

t.test('a role that may not use schema public (notes\' URL taken for Tessera\'s): refused as that, not read as a database to migrate', async (t) => {
  // Postgres hides a schema's tables from a role without USAGE on it: "relation … does not exist", which every
  // command turned into "run `tessera migrate up` first", `migrate status` into every migration pending, and the
  // start into "the database schema is behind", on a database migrated to the last.
  const url = await createTestDatabase(t)
  const { db: admin } = await testConnection(t, url)
  const role = { name: `t_elsewhere_${randomBytes(4).toString('hex')}`, password: randomBytes(12).toString('base64url') }
  const cluster = await testConnection(t, testEnv().adminUrl)
  // Roles are cluster-wide; its grant in this database goes first, or the role cannot be dropped.
  t.teardown(async () => {
    await sql`DROP OWNED BY ${sql.id(role.name)}`.execute(admin)
    await sql`DROP ROLE ${sql.id(role.name)}`.execute(cluster.db)
  })
  await sql`CREATE ROLE ${sql.id(role.name)} LOGIN PASSWORD ${sql.lit(role.password)}`.execute(admin)
  await sql`REVOKE ALL ON SCHEMA public FROM PUBLIC`.execute(admin)
  const asRole = new URL(url)
  asRole.username = role.name
  asRole.password = role.password
  const { db } = await testConnection(t, asRole.toString())

  const refusal = `the role in DATABASE_URL, ${role.name}, may not use schema public, where Tessera's tables are: nothing was done. Connect as Tessera's runtime role (tessera_app, as \`tessera db roles\` makes it), or as its owner role for \`tessera migrate\` (docs/operators.md, "Database roles")`
  await t.rejects(refuseSchemaElsewhere(db), { name: 'SchemaOutOfReachError', message: refusal }, 'the check every command and the start make')
  await t.rejects(migrationStatus(db), { message: refusal }, 'status: not every migration pending')
  await t.rejects(migrateUp(db), { message: refusal }, 'up')
  await t.rejects(migrateDown(db), { message: refusal }, 'down')

  await sql`GRANT USAGE ON SCHEMA public TO ${sql.id(role.name)}`.execute(admin)
  await refuseSchemaElsewhere(db)
  t.pass('with USAGE, nothing to refuse here (a table it may not read is the permission error the commands name)')
})

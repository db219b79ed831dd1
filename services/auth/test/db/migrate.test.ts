/**
 * The migrator against a schema a newer build migrated: this build applies
 * nothing and says why, reverts nothing of the newer build's, lists what it
 * does not know, and refuses a schema both ahead and behind. Through the CLI:
 * test/e2e/migrations.test.ts.
 */
import t from 'tap'
import { sql } from 'kysely'
import { migrateDown, migrateUp, migrationStatus, schemaStanding, SchemaNewerError } from '../../src/db/migrate.js'
import { createTestDatabase, lockWaiters, testConnection } from '../helpers/db.js'

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
  t.same(await beside(async () => await migrateUp(db)), { wrote: 'wrote', migrated: { names: ['0015_user_lookups', '0016_reuse_by_another_client'] } }, 'up: the live transaction writes the sessions it read, and 0015 applies (and 0016 after it)')
  t.same(await migrateDown(db), ['0016_reuse_by_another_client'], 'the newer one reverted first')
  t.same(await beside(async () => await migrateDown(db)), { wrote: 'wrote', migrated: { names: ['0015_user_lookups'] } }, 'down: the same, and 0015 is reverted')
})

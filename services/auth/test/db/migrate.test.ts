/**
 * The migrator against a schema a newer build migrated: this build applies
 * nothing and says why, reverts nothing of the newer build's, lists what it
 * does not know, and refuses a schema both ahead and behind. Through the CLI:
 * test/e2e/migrations.test.ts.
 */
import t from 'tap'
import { sql } from 'kysely'
import { migrateDown, migrateUp, migrationStatus, schemaStanding, SchemaNewerError } from '../../src/db/migrate.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'

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

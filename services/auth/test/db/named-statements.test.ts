/**
 * The refresh grant's call (and client authentication's read) goes as a named (prepared) statement, parsed once
 * per connection, and keeps working when what it was prepared against
 * changes under it: the function replaced or dropped and re-created by a
 * migration, or the connection lost and the pool making a new one.
 */
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { connect, type Connection } from '../../src/db/connect.js'
import type { Db } from '../../src/db/database.js'
import { migrateDown, migrateUp } from '../../src/db/migrate.js'
import { namedStatement } from '../../src/db/named-statements.js'
import { REFRESH_GRANT_SQL, refreshDecision } from '../../src/grants/refresh-decisions.js'
import { authenticateClient } from '../../src/clients/authenticate.js'
import { createClient } from '../../src/clients/register.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { sessionWithToken } from '../helpers/session-fixture.js'

/** A session with one unused token, and a function that rotates it once, as refreshGrant's database call does. */
async function chain (db: Db): Promise<() => Promise<string>> {
  const { userId, sessionId, jti: first, kid } = await sessionWithToken(db, new Date())
  let jti = first
  return async () => {
    const row = await refreshDecision(db, {
      claims: { jti, sid: sessionId, sub: userId },
      wantedScope: undefined,
      now: new Date(),
      graceSeconds: 0,
      ttlSeconds: 3600,
      successorJti: randomUUID(),
      successorKid: kid,
      context: {}
    })
    if (row.successor_jti !== null) jti = row.successor_jti
    return row.decision
  }
}

async function preparedOnThisConnection (db: Db): Promise<string[]> {
  return (await sql<{ name: string }>`SELECT name FROM pg_prepared_statements ORDER BY name`.execute(db)).rows.map((r) => r.name)
}

t.test('the refresh grant is prepared once per connection and reused', async (t) => {
  const { db } = oneConnection(t, await createTestDatabase(t))
  const rotate = await chain(db)
  t.same(await preparedOnThisConnection(db), [], 'nothing is prepared before the first refresh')
  t.equal(await rotate(), 'rotated')
  t.same(await preparedOnThisConnection(db), ['tessera_refresh_grant'], 'the first refresh prepared the call under its name')
  t.equal(await rotate(), 'rotated', 'the next refresh runs the prepared statement')
  const { rows } = await sql<{ plans: number }>`SELECT generic_plans + custom_plans AS plans FROM pg_prepared_statements WHERE name = 'tessera_refresh_grant'`.execute(db)
  t.equal(Number(rows[0]?.plans), 2, 'both refreshes ran the one statement')
})

t.test('a migration that replaces or re-creates the function does not break a statement prepared before it', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = oneConnection(t, url)
  const rotate = await chain(db)
  t.equal(await rotate(), 'rotated', 'prepared against the newest function')
  const migrator = await testConnection(t, url)
  t.same(await migrateDown(migrator.db), ['0018_refresh_grants_together'], 'first the function deciding refreshes together, dropped')
  t.equal(await rotate(), 'rotated', 'a function beside it dropped: the prepared call still runs')
  t.same(await migrateDown(migrator.db), ['0017_login_client_registration'], 'then the login\'s function, replaced in place')
  t.same(await migrateDown(migrator.db), ['0016_reuse_by_another_client'], 'then the refresh grant\'s')
  t.equal(await rotate(), 'rotated', 'the function replaced in place (0016 down): the prepared call runs 0015\'s body')
  t.same(await migrateDown(migrator.db), ['0015_user_lookups'], 'then indexes of sessions and audit_events')
  t.equal(await rotate(), 'rotated', 'an index of a table the function writes replaced (0015 down): the prepared call still runs')
  t.same(await migrateDown(migrator.db), ['0014_revoked_key_sweep'], 'then a column of signing_keys')
  t.equal(await rotate(), 'rotated', 'a column dropped from a table the function reads: the prepared call still runs')
  t.same(await migrateDown(migrator.db), ['0013_login_client_check'], 'then the login\'s function without its client check')
  t.same(await migrateDown(migrator.db), ['0012_redact_invalid_usernames'], 'then a redaction')
  t.same(await migrateDown(migrator.db), ['0011_users_imported_at'], 'then two columns of users')
  t.same(await migrateDown(migrator.db), ['0010_login_backoff_streak'], 'then the back-off\'s function, replaced in place')
  t.same(await migrateDown(migrator.db), ['0009_client_changes'], 'then the clients\' trigger')
  t.same(await migrateDown(migrator.db), ['0008_login_round_trips'], 'then the login\'s functions')
  t.same(await migrateDown(migrator.db), ['0007_refresh_token_kid_brin'])
  t.equal(await rotate(), 'rotated', 'an index re-created under the table (0007 down): the prepared call still runs')
  t.same(await migrateDown(migrator.db), ['0006_refresh_writes'])
  t.equal(await rotate(), 'rotated', 'the function replaced in place (0006 down): the prepared call runs the new body')
  t.same(await migrateDown(migrator.db), ['0005_refresh_grant'])
  t.same(await migrateUp(migrator.db), ['0005_refresh_grant', '0006_refresh_writes', '0007_refresh_token_kid_brin', '0008_login_round_trips', '0009_client_changes', '0010_login_backoff_streak', '0011_users_imported_at', '0012_redact_invalid_usernames', '0013_login_client_check', '0014_revoked_key_sweep', '0015_user_lookups', '0016_reuse_by_another_client', '0017_login_client_registration', '0018_refresh_grants_together'])
  t.equal(await rotate(), 'rotated', 'the function dropped and created again (a new identity): Postgres plans the prepared call again')
  t.same(await preparedOnThisConnection(db), ['tessera_refresh_grant'], 'on the same connection throughout')
})

t.test('a lost connection: the pool connects again and the statement is prepared on the new one', async (t) => {
  const url = await createTestDatabase(t)
  const { db, pool } = oneConnection(t, url)
  const rotate = await chain(db)
  t.equal(await rotate(), 'rotated')
  const before = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(db)).rows[0]?.pid
  const admin = await testConnection(t, url)
  await sql`SELECT pg_terminate_backend(${before})`.execute(admin.db)
  // The idle client hears its server go, and the pool drops it.
  while (pool.totalCount > 0) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(await rotate(), 'rotated', 'the next refresh works on a new connection')
  const after = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(db)).rows[0]?.pid
  t.not(after, before, 'a new server process')
  t.same(await preparedOnThisConnection(db), ['tessera_refresh_grant'], 'which prepared the call again')
})

t.test('a name stays with one text', async (t) => {
  t.equal(namedStatement('tessera_refresh_grant', REFRESH_GRANT_SQL), REFRESH_GRANT_SQL, 'registering the same pair again is harmless')
  t.throws(() => namedStatement('tessera_refresh_grant', 'select 1'), /already taken/, 'another text under a taken name is refused')
})

/** One connection at most, so every call of a test runs on the same server process. */
function oneConnection (t: Test, url: string): Connection {
  const connection = connect(url, 1)
  t.teardown(connection.close)
  return connection
}

t.test('client authentication reads the client as a named statement too', async (t) => {
  const { db } = oneConnection(t, await createTestDatabase(t))
  await createClient(db, { clientId: 'spa', confidential: false, grants: ['password'], scopes: ['read'], resources: [] }, new Date(), { actor: 'operator' })
  const deps = { db, config: { defaultClientId: 'spa' } }
  const read = async (): Promise<string> => (await authenticateClient(deps, { credentials: { method: 'none', clientId: 'spa' }, now: new Date(), context: {} })).clientId
  t.equal(await read(), 'spa', 'a registered public client authenticates')
  t.equal(await read(), 'spa')
  const { rows } = await sql<{ plans: number }>`SELECT generic_plans + custom_plans AS plans FROM pg_prepared_statements WHERE name = 'tessera_client_read'`.execute(db)
  t.equal(Number(rows[0]?.plans), 2, 'both reads ran the one statement prepared under its name')
})

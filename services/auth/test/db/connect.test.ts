/**
 * connect()'s statement timeout (the HTTP workers' TESSERA_DB_STATEMENT_TIMEOUT_MS)
 * against the real Postgres: set on every connection of the pool, and what a
 * statement past it throws is the database unavailable for a moment (503), not
 * a fault; so is a write refused by a database that takes none, and so is a
 * server gone silent, which no statement timeout can end.
 */
import { silenceableRelay } from '@tessera/testkit'
import t from 'tap'
import { sql } from 'kysely'
import { connect, type Connection } from '../../src/db/connect.js'
import { isDatabaseUnavailable } from '../../src/errors.js'
import { createTestDatabase } from '../helpers/db.js'

const hung = Symbol('still waiting after 10 s')

/** What `select 1` fails with, or `hung` when it has neither failed nor answered after 10 s. */
async function selectOneFailure (db: Connection['db']): Promise<unknown> {
  return await Promise.race([
    sql`select 1`.execute(db).then(() => undefined, (err: unknown) => err),
    new Promise((resolve) => setTimeout(() => { resolve(hung) }, 10_000).unref())
  ])
}

// pg warns once per process, so every test here counts: a query queued on a
// connection still running its setup was "already executing a query".
const warnings: Error[] = []
process.on('warning', (warning) => { warnings.push(warning) })

t.test('a new connection runs its setup before it is handed out, so pg warns of no query queued behind another', async (t) => {
  const connection = connect(await createTestDatabase(t), 2)
  t.teardown(connection.close)
  // Two at once, so the pool opens both of its connections; Postgres's default is jit = on. pool.query (the
  // bench's fixtures use it) hands a new connection over in the tick it connects, where a setup still queued warned.
  const jit = await Promise.all([1, 2].map(async () => (await connection.pool.query<{ jit: string }>('show jit')).rows[0]?.jit))
  t.same(jit, ['off', 'off'], 'the setup ran before each connection\'s first statement')
  // Node emits a warning on the next tick.
  await new Promise((resolve) => setImmediate(resolve))
  t.same(warnings.map((warning) => warning.message), [])
})

t.test('a statement timeout is on every connection of the pool, and a statement past it is cancelled as unavailable', async (t) => {
  const connection = connect(await createTestDatabase(t), 2, { statementTimeoutMs: 200 })
  t.teardown(connection.close)
  // Two at once, so the pool opens both of its connections.
  const settings = await Promise.all([1, 2].map(async () => await connection.db.transaction().execute(async (trx) =>
    (await sql<{ statement_timeout: string }>`show statement_timeout`.execute(trx)).rows[0]?.statement_timeout)))
  t.same(settings, ['200ms', '200ms'])
  const cancelled = await sql`select pg_sleep(5)`.execute(connection.db).catch((err: unknown) => err)
  t.match(cancelled, { code: '57014' }, 'Postgres cancels it')
  t.ok(isDatabaseUnavailable(cancelled), 'answered 503 with Retry-After')
})

t.test('without one, statements run as long as they take (the CLI, the primary\'s jobs)', async (t) => {
  const connection = connect(await createTestDatabase(t), 1)
  t.teardown(connection.close)
  t.same((await sql<{ statement_timeout: string }>`show statement_timeout`.execute(connection.db)).rows, [{ statement_timeout: '0' }])
})

t.test('a write to a database that takes no writes (a standby after a failover, read-only for maintenance) is unavailable (503), not a fault', async (t) => {
  const url = await createTestDatabase(t)
  const connection = connect(url, 1)
  t.teardown(connection.close)
  await sql`set default_transaction_read_only = on`.execute(connection.db)
  const refused = await sql`create temporary table t (x int)`.execute(connection.db).then(() => undefined, (err: unknown) => err)
  t.match(refused, { code: '25006' }, 'Postgres refuses the write')
  t.ok(isDatabaseUnavailable(refused), 'answered 503 with Retry-After')
})

t.test('a statement whose server goes silent fails as unavailable soon after the statement timeout, and frees its pool slot', async (t) => {
  const relay = await silenceableRelay(t, new URL(await createTestDatabase(t)))
  // One connection, so the next statement can only run if the silent one was let go.
  const connection = connect(relay.url, 1, { statementTimeoutMs: 300 })
  t.teardown(connection.close)
  t.same((await sql<{ one: number }>`select 1 as one`.execute(connection.db)).rows, [{ one: 1 }])
  relay.silence()
  const lost = await selectOneFailure(connection.db)
  t.not(lost, hung, 'Postgres\'s statement timeout cannot end this wait; the client does')
  t.match(lost, { code: 'ETIMEDOUT', message: 'the database did not answer within 2300 ms' }, 'cut at the statement timeout and its margin')
  t.ok(isDatabaseUnavailable(lost), 'answered 503 with Retry-After')
  t.same((await sql<{ one: number }>`select 1 as one`.execute(connection.db)).rows, [{ one: 1 }], 'the next statement gets a new connection, through to the server')
})

t.test('a new connection whose server goes silent at its setup fails as unavailable soon after the statement timeout, not a hang', async (t) => {
  const relay = await silenceableRelay(t, new URL(await createTestDatabase(t)), { silentFrom: 'first-statement' })
  const connection = connect(relay.url, 1, { statementTimeoutMs: 300 })
  t.teardown(connection.close)
  const lost = await selectOneFailure(connection.db)
  t.not(lost, hung, 'the setup is awaited before the statement is sent, and bounded as a statement is')
  t.match(lost, { code: 'ETIMEDOUT', message: 'the database did not answer within 2300 ms' })
  t.ok(isDatabaseUnavailable(lost), 'answered 503 with Retry-After')
})

t.test('a transaction whose statement the silence cut fails with that cut, unavailable, not with its rollback\'s "not queryable"', async (t) => {
  const relay = await silenceableRelay(t, new URL(await createTestDatabase(t)))
  const connection = connect(relay.url, 1, { statementTimeoutMs: 300 })
  t.teardown(connection.close)
  const lost = await connection.db.transaction().execute(async (trx) => {
    await sql`select 1`.execute(trx)
    relay.silence()
    await sql`select 1`.execute(trx)
  }).then(() => undefined, (err: unknown) => err)
  // Kysely rolls back on the cut connection, and that error is the one thrown; pg's own words for it were a 500.
  t.match(lost, { code: 'ETIMEDOUT', message: 'the database did not answer within 2300 ms' }, 'the rollback fails as the statement did')
  t.ok(isDatabaseUnavailable(lost), 'answered 503 with Retry-After')
})

t.test('without a statement timeout (the CLI, the primary\'s jobs), a statement is never cut by the client', async (t) => {
  const connection = connect(await createTestDatabase(t), 1)
  t.teardown(connection.close)
  t.same((await sql<{ slept: string }>`select pg_sleep(2.5)::text as slept`.execute(connection.db)).rows, [{ slept: '' }])
})

t.test('a connection past its lifetime is closed once idle, and the next statement runs on a new one (so a TLS file rotated on disk is read without a restart)', async (t) => {
  const connection = connect(await createTestDatabase(t), 1, { lifetimeSeconds: 1 })
  t.teardown(connection.close)
  const backend = async (): Promise<number | undefined> => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(connection.db)).rows[0]?.pid
  const first = await backend()
  t.equal(await backend(), first, 'within its lifetime, the same connection')
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const next = await backend()
  t.ok(first !== undefined && next !== undefined && next !== first, 'past it, another backend')
})

t.test('by default a connection lives an hour', async (t) => {
  const connection = connect(await createTestDatabase(t), 1)
  t.teardown(connection.close)
  t.equal((connection.pool as unknown as { options: { maxLifetimeSeconds: number } }).options.maxLifetimeSeconds, 3600)
})

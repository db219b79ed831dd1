/**
 * The background jobs in process, on a real database: the LISTEN connection
 * brings a change made elsewhere into the keyring within a second, survives
 * its backend being killed, and the timer drives the schedule.
 */
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { memorySink, silenceableRelay } from '@tessera/testkit'
import t, { type Test } from 'tap'
import type { Config } from '../src/config.js'
import type { Db } from '../src/db/database.js'
import { sql } from 'kysely'
import { CLEANUP_CATCH_UP_PAUSE_MS, startBackgroundJobs, type JobDeps } from '../src/jobs.js'
import { ensureSigningKey } from '../src/keys/ensure.js'
import { readKekFile, resolveKek } from '../src/keys/kek.js'
import { Keyring } from '../src/keys/keyring.js'
import { loadKeyring } from '../src/keys/load.js'
import { LISTENER_NAME } from '../src/db/listen.js'
import { rotateKeys } from '../src/keys/rotate.js'
import { rewrapKeys } from '../src/keys/rewrap.js'
import { cleanupExpired } from '../src/sessions/cleanup.js'
import { createClient } from '../src/clients/register.js'
import { rotateClientSecret } from '../src/clients/rotate-secret.js'
import { deleteClient, disableClient } from '../src/clients/end.js'
import { createLogger } from '../src/logging.js'
import { createMetrics, type Metrics } from '../src/metrics/metrics.js'
import { refuseRejectedKey, testConfig } from './helpers/app.js'
import { createTestDatabase, testConnection } from './helpers/db.js'
import { LOG_LINE_DEADLINE_MS, within } from './helpers/http.js'
import { sessionWithToken } from './helpers/session-fixture.js'

/**
 * How long a test waits for a change a NOTIFY announced. Nothing else brings
 * it that soon: a client change has no other way to be heard, and the first
 * test below puts the key reload (TESSERA_KEY_CHECK_INTERVAL) and every step
 * of the key timer (the publish lead, the refresh grace after which a demoted
 * key's private half is erased) an hour or more away. How soon is not what
 * they prove: a bound of one second, for the notification and a reload in
 * this process, was the machine's speed (three test files at once, load 9).
 */
const HEARD_WITHIN_MS = 10_000

interface Instance { config: Config, kek: Buffer, keyring: Keyring, logs: () => string, metrics: Metrics, clock: () => Date, advance: (seconds: number) => void, clientEvents: string[], stop: () => Promise<void>, reloadKeys: (why: string) => Promise<void> }

/** One instance's keyring and background jobs on `url`, logging into `logs`; its clock runs, and `advance` moves it on. */
async function startInstance (t: Test, url: string, db: Db, env: Record<string, string>, more: Pick<JobDeps, 'keyStatementTimeoutMs' | 'cleanupStatementTimeoutMs' | 'cleanupBatches' | 'onReload'> = {}): Promise<Instance> {
  const config = testConfig(env)
  const kek = config.kek ?? randomBytes(32)
  const sink = memorySink()
  const logger = createLogger(config, sink.stream)
  const keyring = new Keyring()
  await ensureSigningKey(db, kek, config.keyBits, new Date())
  await loadKeyring(db, kek, keyring, { onRejectedKey: refuseRejectedKey })
  const metrics = createMetrics({ keyring, processMetrics: false })
  let offset = 0
  const clock = (): Date => new Date(Date.now() + offset * 1000)
  const clientEvents: string[] = []
  const clientChanges = { changed: (id: string) => { clientEvents.push(`changed ${id}`) }, heard: (live: boolean) => { clientEvents.push(live ? 'live' : 'lost') } }
  const jobs = await startBackgroundJobs({ config, databaseUrl: url, keyring, kek, logger, clock, metrics, clientChanges, ...more })
  // Once, whether the test stops them or the teardown does.
  let stopping: Promise<void> | undefined
  const stop = async (): Promise<void> => { await (stopping ??= jobs.stop()) }
  t.teardown(stop)
  return { config, kek, keyring, logs: sink.text, metrics, clock, advance: (seconds) => { offset += seconds }, clientEvents, stop, reloadKeys: jobs.reloadKeys }
}

t.test('an instance hears of changes by NOTIFY, well before its periodic reload, also after losing its LISTEN connection', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const other = await testConnection(t, url)
  const { config, kek, keyring, logs, metrics } = await startInstance(t, url, db, { TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '1h', TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_PUBLISH_LEAD: '2h', TESSERA_REFRESH_GRACE: '1h' })
  const making = { kek, bits: config.keyBits }
  const who = { actor: 'test' }

  const rotated = await rotateKeys(other.db, making, { immediate: true, clock: () => new Date(), who })
  t.ok(await within(HEARD_WITHIN_MS, async () => keyring.signer?.kid === rotated.promoted) !== undefined, 'signs with the new key, told by NOTIFY')

  const listeners = async (): Promise<number[]> => (await sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE application_name = ${LISTENER_NAME} AND datname = current_database()`.execute(other.db)).rows.map((r) => r.pid)
  const [pid] = await listeners()
  t.ok(pid, 'the listener is connected')
  await sql`SELECT pg_terminate_backend(${pid})`.execute(other.db)
  // Changed while the listener is away or reconnecting: the catch-up reload after reconnecting brings it in if its NOTIFY was lost.
  const missed = await rotateKeys(other.db, making, { immediate: true, clock: () => new Date(), who })
  t.ok(await within(5000, async () => keyring.signer?.kid === missed.promoted, 50) !== undefined, 'a change made while disconnected arrives after the reconnect')
  t.ok(await within(2000, async () => (await listeners()).length === 1 && !(await listeners()).includes(pid ?? 0)) !== undefined, 'listening again on a new connection')
  const lost = (await metrics.registry.getSingleMetric('tessera_background_job_failures_total')?.get())?.values.find((v) => v.labels.job === 'key_listener')
  t.ok((lost?.value ?? 0) >= 1, 'the lost LISTEN connection is counted')
  const after = await rotateKeys(other.db, making, { immediate: true, clock: () => new Date(), who })
  t.ok(await within(HEARD_WITHIN_MS, async () => keyring.signer?.kid === after.promoted) !== undefined, 'and hears the next change, told by NOTIFY')
  t.match(logs(), 'change listener lost its connection; reconnecting')
  t.match(logs(), 'change listener reconnected')
})

t.test('a change no NOTIFY announced is picked up by the periodic reload, within TESSERA_KEY_CHECK_INTERVAL', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const other = await testConnection(t, url)
  // A publish lead far past the test, so the key timer makes no transition (and no reload) of its own.
  const { config, kek, keyring } = await startInstance(t, url, db, { TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_PUBLISH_LEAD: '2m' })
  const pending = await rotateKeys(other.db, { kek, bits: config.keyBits }, { immediate: false, clock: () => new Date(), who: { actor: 'test' } })
  const kid = pending.created ?? ''
  t.ok(await within(5000, async () => keyring.jwks.kids.includes(kid)) !== undefined, 'the next key is published, as NOTIFY told')
  // Written as a listener that silently stopped hearing (a half-open connection) would miss it: no NOTIFY at all.
  await other.db.updateTable('signing_keys').set({ state: 'revoked', revoked_at: new Date(), unpublished_at: new Date(), private_key_enc: null, private_erased_at: new Date() })
    .where('kid', '=', kid).execute()
  // Generous for a loaded machine: without the reload it never happens.
  const took = await within(8000, async () => !keyring.jwks.kids.includes(kid), 50)
  t.ok(took !== undefined, `the periodic reload unpublished it (took ${String(took)} ms)`)
})

t.test('a database gone silent (a failover that left the old address unanswering, a partition) holds neither the reloads nor the key timer past the key statements\' bound', async (t) => {
  const url = await createTestDatabase(t)
  const relay = await silenceableRelay(t, new URL(url))
  // The instance's connections go through the relay (from the URL); the test's own do not.
  const { db } = await testConnection(t, url)
  const other = await testConnection(t, url)
  // Reloads and ticks each second, so the key connections are open and in use when the relay goes silent. Cleanup's bound short too, as in the retry test below.
  const { config, kek, keyring, logs, metrics, clock, advance } = await startInstance(t, relay.url, db,
    { TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_PUBLISH_LEAD: '2m', TESSERA_REFRESH_GRACE: '0' }, { keyStatementTimeoutMs: 300, cleanupStatementTimeoutMs: 300 })
  await new Promise((resolve) => setTimeout(resolve, 1500))
  relay.silence()
  // Its NOTIFY is lost with the silent LISTEN connection: a reload must find it.
  const pending = await rotateKeys(other.db, { kek, bits: config.keyBits }, { immediate: false, clock, who: { actor: 'test' } })
  const kid = pending.created ?? ''
  // The silent reload is cut at 2.3 s; without a bound, every later reload joined it, for TCP's ~15 minutes.
  t.ok(await within(8000, async () => keyring.jwks.kids.includes(kid), 50) !== undefined, 'a later reload, on a new connection, publishes the new key')
  const failed = (await metrics.registry.getSingleMetric('tessera_background_job_failures_total')?.get())?.values.find((v) => v.labels.job === 'keyring_reload')
  t.ok((failed?.value ?? 0) >= 1, 'the silent reload failed and was counted')
  // Which error ends it depends on the moment: the answer bound on a connection in use, or the pool's connect timeout on a new one.
  const reloadFailures = logs().split('\n').filter((line) => line.includes('"msg":"keyring reload failed"'))
  t.ok(reloadFailures.length > 0, 'logged')
  // An outage repeats this line at every retry: its code and message, not pg's stack each time.
  t.ok(reloadFailures.every((line) => line.includes('"db_error":{') && !line.includes('"stack"')), 'as a database out of reach, without a stack')
  advance(config.keyPublishLead)
  t.ok(await within(8000, async () => keyring.signer?.kid === kid, 50) !== undefined, 'and the key timer still moves: the key is promoted after its lead')
})

t.test('client changes are heard at their commit, and a lost LISTEN says so until it is back', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const other = await testConnection(t, url)
  const { clientEvents } = await startInstance(t, url, db, { TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '60s' })
  t.same(clientEvents, ['live'], 'listening from the start')
  const operator = { actor: 'operator' }
  const at = new Date()
  await createClient(other.db, { clientId: 'svc', confidential: true, grants: ['client_credentials'], scopes: ['read'], resources: [] }, at, operator)
  t.ok(await within(HEARD_WITHIN_MS, async () => clientEvents.includes('changed svc')) !== undefined, 'a new client is heard')
  await other.db.transaction().execute(async (trx) => {
    await sql`UPDATE clients SET scopes = '{notes:read}' WHERE client_id = 'svc'`.execute(trx)
    await sql`SELECT pg_sleep(0.2)`.execute(trx)
    t.same(clientEvents, ['live', 'changed svc'], 'a change is not heard before its commit')
  })
  await rotateClientSecret(other.db, { clientId: 'svc', graceSeconds: 0, clock: () => at }, operator)
  await disableClient(other.db, 'svc', () => at, operator)
  await sql`UPDATE clients SET client_id = 'svc2' WHERE client_id = 'svc'`.execute(other.db)
  await deleteClient(other.db, 'svc2', () => at, operator)
  await sql`TRUNCATE clients CASCADE`.execute(other.db)
  t.ok(await within(HEARD_WITHIN_MS, async () => clientEvents.includes('changed *')) !== undefined)
  t.same(clientEvents, ['live', 'changed svc', 'changed svc', 'changed svc', 'changed svc', 'changed svc', 'changed svc2', 'changed svc2', 'changed *'],
    'the update at its commit, a rotation, a disable, a rename (both names), a deletion and a truncate, each heard once, in order')

  const [pid] = (await sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE application_name = ${LISTENER_NAME} AND datname = current_database()`.execute(other.db)).rows.map((r) => r.pid)
  await sql`SELECT pg_terminate_backend(${pid})`.execute(other.db)
  t.ok(await within(5000, async () => clientEvents.at(-1) === 'live' && clientEvents.includes('lost'), 50) !== undefined, 'lost, then listening again')
  t.same(clientEvents.slice(-2), ['lost', 'live'])
})

t.test('a connection lost while checked out from the pool fails its work, not the process', async (t) => {
  const url = await createTestDatabase(t)
  const { db, pool } = await testConnection(t, url)
  const other = await testConnection(t, url)
  const client = await pool.connect()
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
  const lost = once(client, 'error', { signal: AbortSignal.timeout(5000) })
  await sql`SELECT pg_terminate_backend(${rows[0]?.pid ?? 0})`.execute(other.db)
  await lost
  await t.rejects(client.query('SELECT 1'), 'the dead client refuses work')
  client.release()
  t.same((await sql<{ one: number }>`SELECT 1 AS one`.execute(db)).rows, [{ one: 1 }], 'the pool carries on with a new client')
})

t.test('the timer promotes a pending key after the lead and logs it', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const { config, kek, keyring, logs, clock, advance } = await startInstance(t, url, db, { TESSERA_KEY_ROTATION: 'off', TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEY_PUBLISH_LEAD: '4s', TESSERA_REFRESH_GRACE: '0' })
  const pending = await rotateKeys(db, { kek, bits: config.keyBits }, { immediate: false, clock, who: { actor: 'test' } })
  // The lead passes on the clock the timer reads; the timer itself runs in real time.
  advance(config.keyPublishLead)
  t.ok(await within(7000, async () => keyring.signer?.kid === pending.created, 50) !== undefined, 'promoted by the timer')
  // The keyring may hear the promotion's NOTIFY before the timer, past its commit, writes its line.
  t.ok(await within(LOG_LINE_DEADLINE_MS, async () => /"transition":"promoted".*"msg":"signing key transition"/.test(logs()), 50) !== undefined, 'and logged it')
})

t.test('an instance left on the old KEK by a rewrap: each scheduled step that needs the KEK fails at error, naming the remedy', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const { kek, logs, advance } = await startInstance(t, url, db, { TESSERA_KEY_ROTATION: '1h', TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEY_PUBLISH_LEAD: '4s' })
  await rewrapKeys(db, kek, randomBytes(32), { actor: 'test' })
  // A rotation is due: making the next key checks the KEK against the stored ones first.
  advance(3600)
  t.ok(await within(5000, async () => logs().includes('key lifecycle step failed'), 50) !== undefined, 'the step fails')
  t.match(logs(), /"level":50,.*"msg":"key lifecycle step failed: a signing key is sealed under another KEK \(was `tessera keys rewrap` run\?\): restart this instance with the new TESSERA_KEK"/)
})

t.test('the workers are told of a key change once the primary\'s own keyring has it, so one forked meanwhile and asking for it gets the new keys', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const config = testConfig({ TESSERA_KEY_ROTATION: 'off' })
  const kek = config.kek ?? randomBytes(32)
  const keyring = new Keyring()
  await ensureSigningKey(db, kek, config.keyBits, new Date())
  await loadKeyring(db, kek, keyring, { onRejectedKey: refuseRejectedKey })
  const told: Array<{ why: string, signer: string | undefined }> = []
  const jobs = await startBackgroundJobs({
    config,
    databaseUrl: url,
    keyring,
    kek,
    logger: createLogger(config, memorySink().stream),
    clock: () => new Date(),
    metrics: createMetrics({ keyring, processMetrics: false }),
    onReload: (why) => { told.push({ why, signer: keyring.signer?.kid }) }
  })
  t.teardown(jobs.stop)
  const rotated = await rotateKeys(db, { kek, bits: config.keyBits }, { immediate: true, clock: () => new Date(), who: { actor: 'test' } })
  t.ok(await within(5000, async () => told.some((telling) => telling.signer === rotated.created), 20) !== undefined, 'told after the reload')
  t.same(told.filter((telling) => telling.signer !== rotated.created), [], 'never before it', { told })
})

t.test('the local KEK file: made once with mode 0600, read back the same', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-kek-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const local = { kek: undefined, dataDir: dir, production: false }
  const made = await resolveKek(local)
  t.equal(made.length, 32)
  t.equal((await fs.stat(path.join(dir, 'kek'))).mode & 0o777, 0o600)
  t.same(await resolveKek(local), made, 'the same KEK next time')
  const configured = randomBytes(32)
  t.equal(await resolveKek({ ...local, kek: configured }), configured, 'TESSERA_KEK wins')
  await t.rejects(resolveKek({ ...local, production: true }), { name: 'ConfigError', message: 'TESSERA_KEK (or TESSERA_KEK_FILE) is required when NODE_ENV=production' },
    'production never makes a KEK of its own')
  await fs.writeFile(path.join(dir, 'short'), 'abc\n')
  await t.rejects(readKekFile(path.join(dir, 'short')), /does not hold base64url of 32 bytes/)
})

t.test('a failing background run is logged and counted by job', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  await sql`DROP TABLE login_throttle`.execute(db)
  const { logs, metrics } = await startInstance(t, url, db, { TESSERA_CLEANUP_INTERVAL: '1s' })
  const failed = async (): Promise<number> => (await metrics.registry.getSingleMetric('tessera_background_job_failures_total')?.get())?.values.find((v) => v.labels.job === 'cleanup')?.value ?? 0
  t.ok(await within(5000, async () => await failed() >= 1, 100) !== undefined, 'the cleanup failure is counted')
  t.match(logs(), '"msg":"cleanup failed"')
})

t.test('callers that shared a failed keyring reload get one retry about 1 s later, not a wait doubled once per caller', async (t) => {
  const url = await createTestDatabase(t)
  const relay = await silenceableRelay(t, new URL(url))
  // The instance's connections go through the relay (from the URL). Cleanup runs from the start:
  // a statement of it the silence catches holds stop(), which waits for a batch in flight, until
  // cleanup's bound, short here as the key work's.
  const { db } = await testConnection(t, url)
  const retries: number[] = []
  // The backstop far off, so only the retry reloads after the failure (the listener, silenced too, notices only after its 10 s heartbeat).
  const { reloadKeys } = await startInstance(t, relay.url, db, { TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '10m' },
    { keyStatementTimeoutMs: 300, cleanupStatementTimeoutMs: 300, onReload: (why) => { if (why === 'retrying a failed reload') retries.push(Date.now()) } })
  // A key connection open, so that the reloads below meet a silent one.
  await reloadKeys('warm-up')
  relay.silence()
  // As the workers do in a failover, each asking about a kid the primary has not loaded: one shared run, which fails for every caller.
  const callers = 5
  const outcomes = await Promise.allSettled(Array.from({ length: callers }, async () => { await reloadKeys('a worker met a kid the instance missed') }))
  t.same(outcomes.map((o) => o.status), Array(callers).fill('rejected'), 'the shared reload failed for each caller')
  // Each caller doubled the wait before: the first retry came 2^(callers - 1) = 16 s after the failure. Generous for a loaded machine, far short of that.
  const took = await within(10_000, async () => retries.length > 0, 50)
  t.ok(took !== undefined, `retried without waiting 16 s (the first retry ended ${String(took)} ms after the failure)`)
})

/** Audit events 100 days old, past the default retention of 90 days. */
async function oldAuditEvents (db: Db, count: number): Promise<void> {
  await sql`INSERT INTO audit_events (type, occurred_at) SELECT 'login.failed', now() - interval '100 days' FROM generate_series(1, ${count})`.execute(db)
}

async function dueAuditEvents (db: Db): Promise<number> {
  const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM audit_events WHERE occurred_at < now() - interval '90 days'`.execute(db)
  return Number(rows[0]?.n)
}

t.test('a cleanup run that stops at its cap is followed by another soon, not an interval later, until nothing due is left', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  // Five expired sessions, the fifth's token deleted by an earlier run.
  for (let i = 0; i < 5; i++) await sessionWithToken(db, new Date(Date.now() - 2 * 86_400_000))
  await db.deleteFrom('refresh_tokens').where('jti', '=', (await db.selectFrom('refresh_tokens').select('jti').limit(1).executeTakeFirstOrThrow()).jti).execute()
  // The fixture's keys are placeholders, which the instance's start would try to open and load: revoked and erased, it reads none.
  await sql`UPDATE signing_keys SET state = 'revoked', revoked_at = now(), unpublished_at = now(), private_key_enc = NULL, private_erased_at = now()`.execute(db)
  await oldAuditEvents(db, 10)
  // Four rows of each kind per run: the tokens take one run (full: another follows), the sessions two, the audit events three. The interval is far past the test.
  const { logs, metrics } = await startInstance(t, url, db, { TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '60s', TESSERA_CLEANUP_INTERVAL: '1h' },
    { cleanupBatches: { batchSize: 2, maxBatches: 2 } })
  const sessionsLeft = async (): Promise<number> => (await db.selectFrom('sessions').select('id').execute()).length
  // And the last run's line, which it writes after counting: the rows are gone from the database a moment before the counters move.
  const took = await within(30_000, async () => await dueAuditEvents(db) === 0 && await sessionsLeft() === 0 && logs().includes('"auditEvents":2,"msg":"cleanup deleted expired rows"'), 100)
  t.ok(took !== undefined, `every due row deleted without waiting the interval (took ${String(took)} ms)`)
  const pruned = await db.selectFrom('audit_events').select(sql<number>`(detail->>'deleted')::int`.as('deleted')).where('type', '=', 'audit.pruned').orderBy('id').execute()
  t.same(pruned.map((row) => row.deleted), [2, 2, 2, 2, 2], 'one audit.pruned row per batch, as before')
  t.match(logs(), /"sessions":4,"refreshTokens":4,"auditEvents":4,"loginThrottle":0,"msg":"cleanup is behind; continuing"/, 'a run that ends behind says so, with its counts')
  t.match(logs(), /"sessions":1,"refreshTokens":0,"auditEvents":4,"msg":"cleanup deleted expired rows"/, 'the end-of-run line names each kind')
  t.equal(logs().split('cleanup is behind; continuing').length - 1, 2, 'behind after the first two runs only')
  const deleted = (await metrics.registry.getSingleMetric('tessera_cleanup_deleted_total')?.get())?.values ?? []
  t.same(Object.fromEntries(deleted.map((v) => [v.labels.kind, v.value])), { sessions: 5, refresh_tokens: 4, audit_events: 10, login_throttle: 0 }, 'and counts what it deleted, by kind')
})

t.test('stopping the jobs stops a cleanup catching up, within the run in progress', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const total = 10_000
  const perRun = 2000
  await oldAuditEvents(db, total)
  const { stop } = await startInstance(t, url, db, { TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '60s', TESSERA_CLEANUP_INTERVAL: '1h' },
    { cleanupBatches: { batchSize: 1, maxBatches: perRun } })
  // Past the first run's rows: the second run, catching up, is deleting one row a statement.
  t.ok(await within(30_000, async () => await dueAuditEvents(db) < total - perRun, 10) !== undefined, 'a second run started without waiting the interval')
  await stop()
  const left = await dueAuditEvents(db)
  t.ok(left > total - 2 * perRun, `the run in progress stopped after its batch in flight (${left} left)`)
  await new Promise((resolve) => setTimeout(resolve, 2 * CLEANUP_CATCH_UP_PAUSE_MS + 500))
  t.equal(await dueAuditEvents(db), left, 'and no run follows the stop')
})

t.test('a database gone silent during a cleanup batch holds neither the run nor stop() past cleanup\'s bound: the run fails, is counted, and the lock is let go', async (t) => {
  const url = await createTestDatabase(t)
  const relay = await silenceableRelay(t, new URL(url))
  // The instance's connections go through the relay (from the URL); the test's own do not.
  const { db, pool } = await testConnection(t, url)
  // A lock the first batch (expired refresh tokens) waits behind, so that the silence finds it in flight.
  const holder = await pool.connect()
  await holder.query('BEGIN')
  await holder.query('LOCK TABLE refresh_tokens IN SHARE MODE')
  const { stop, logs, metrics } = await startInstance(t, relay.url, db, { TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '60s', TESSERA_CLEANUP_INTERVAL: '1h' },
    { keyStatementTimeoutMs: 300, cleanupStatementTimeoutMs: 3000 })
  const batchWaiting = async (): Promise<boolean> => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE 'delete from "refresh_tokens"%'`.execute(db)).rows[0]?.n) === 1
  t.ok(await within(10_000, batchWaiting, 20) !== undefined, 'the start-up run\'s first batch waits behind the lock')
  const cleanupConnections = (await metrics.registry.getSingleMetric('tessera_db_pool_connections')?.get())?.values.find((v) => v.labels.pool === 'cleanup')?.value
  t.equal(cleanupConnections, 1, 'on a connection of its own, counted as pool="cleanup"')
  relay.silence()
  // The batch now ends on the server; its answer is lost in the silence.
  await holder.query('ROLLBACK')
  holder.release()
  // Without a bound the batch, and stop() with it, waited for TCP's ~15 minutes. Generous for a loaded machine: cut 5 s after it was sent.
  const stopped = await Promise.race([stop().then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 30_000).unref())])
  t.ok(stopped, 'stop() returns')
  const failed = (await metrics.registry.getSingleMetric('tessera_background_job_failures_total')?.get())?.values.find((v) => v.labels.job === 'cleanup')?.value ?? 0
  t.equal(failed, 1, 'the run failed and was counted')
  // The cut batch's own error, not the lock release's after it on the cut connection.
  t.match(logs(), /"message":"the database did not answer within 5000 ms".*"msg":"cleanup failed"/, 'logged, saying the database did not answer')
  // The cut connection's backend ends with it, and with it the session's advisory lock: the next run, here or on another instance, is not locked out.
  const ran = await within(10_000, async () => (await cleanupExpired(db, { now: new Date(), revokedRetention: 0, auditRetention: 86_400 })).ran, 100)
  t.ok(ran !== undefined, 'the cleanup lock is free again')
})

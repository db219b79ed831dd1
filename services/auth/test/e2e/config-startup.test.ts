/**
 * A configuration error stops the real process with one line on stderr and
 * exit code 1 (the in-process checks of the same errors are in config.test.ts).
 */
import { freePort, runProcess, silenceableRelay, spawnProcess, type SilentFrom } from '@tessera/testkit'
import t from 'tap'
import { createServer, type AddressInfo } from 'node:net'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sql } from 'kysely'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { SERVER_ENTRY, startServer } from '../helpers/server.js'
import { KEYS_LOCK } from '../../src/db/locks.js'

t.test('the real server refuses both TESSERA_KEK and TESSERA_KEK_FILE in one line', async (t) => {
  const { code, stderr } = await runProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', TESSERA_KEK: 'x', TESSERA_KEK_FILE: '/dev/null' } })
  t.equal(code, 1)
  t.equal(stderr, 'tessera: TESSERA_KEK and TESSERA_KEK_FILE are both set: set only one of them\n')
})

t.test('the real process prints one line and exits 1 on a bad value', async (t) => {
  const { code, stderr } = await runProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', TESSERA_ACCESS_TTL: 'abc' } })
  t.equal(code, 1)
  t.equal(stderr, 'tessera: TESSERA_ACCESS_TTL="abc" is invalid: expected a duration such as 300, 300s, 5m, 1h or 30d, at most 36500d, above 0\n')
})

t.test('a TESSERA_DATA_DIR that cannot be made is named in the one line the start fails with, for the embedded Postgres and for the generated KEK', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-datadir-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  await fs.writeFile(path.join(dir, 'file'), '')
  const dataDir = path.join(dir, 'file', 'state')
  const env = { PATH: process.env.PATH ?? '', TESSERA_DATA_DIR: dataDir, TESSERA_WORKERS: '1', PORT: '0' }
  const line = `tessera: failed to start: TESSERA_DATA_DIR=${JSON.stringify(dataDir)} cannot be used as the local state directory (ENOTDIR: not a directory, mkdir '${dataDir}')\n`
  // It was "tessera: failed to start: ENOTDIR: not a directory, mkdir '…'", naming no setting.
  const embedded = await runProcess(process.execPath, [SERVER_ENTRY], { env })
  t.equal(embedded.code, 1)
  t.equal(embedded.stderr, line, 'DATABASE_URL unset: the embedded Postgres would live there')
  const kek = await runProcess(process.execPath, [SERVER_ENTRY], { env: { ...env, DATABASE_URL: await createTestDatabase(t) } })
  t.equal(kek.code, 1)
  t.equal(kek.stderr, line, 'TESSERA_KEK unset: the generated KEK would live there')
})

t.test('a NODE_ENV that is not production, development or test runs, warned of at start (a typo of production would otherwise pass unseen)', async (t) => {
  const server = await startServer(t, { DATABASE_URL: await createTestDatabase(t), NODE_ENV: 'prod', TESSERA_KEK: 'a'.repeat(43) })
  t.match(server.output(), /"level":40,.*"msg":"NODE_ENV=\\"prod\\" is not production: a generated KEK is allowed and logs are pretty at a terminal; set NODE_ENV=production in production"/)
  const test = await startServer(t, { DATABASE_URL: await createTestDatabase(t), NODE_ENV: 'test', TESSERA_KEK: 'a'.repeat(43) })
  t.notMatch(test.output(), /NODE_ENV/, 'test, development and production are not warned of')
})

t.test('an instance on another port than the default issuer names, with TESSERA_ISSUER unset, is warned of at start', async (t) => {
  const port = String(await freePort())
  const server = await startServer(t, { DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: 'a'.repeat(43), PORT: port, TESSERA_WORKERS: '1' })
  t.match(server.output(), '"level":40,')
  t.match(server.output(), `TESSERA_ISSUER is unset: tokens, the metadata and its JWKS URL name http://127.0.0.1:8080, not this instance on port ${port}; set TESSERA_ISSUER to the URL clients reach it by`)
})

t.test('a plain-http issuer on another host is warned of at start in production', async (t) => {
  const server = await startServer(t, { DATABASE_URL: await createTestDatabase(t), NODE_ENV: 'production', TESSERA_KEK: 'a'.repeat(43), TESSERA_ISSUER: 'http://auth.example.com', TESSERA_WORKERS: '1' })
  t.match(server.output(), /"level":40,.*"msg":"TESSERA_ISSUER=http:\/\/auth.example.com is plain http in production: clients would send passwords and tokens to it in clear/)
})

t.test('a TESSERA_ISSUER holding a password stops the start in one line that does not repeat it; it was served, in every token\'s iss and the start\'s log line', async (t) => {
  const secret = 'IssuerSecret3b8d'
  const server = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: 'a'.repeat(43), TESSERA_WORKERS: '1', PORT: '0', TESSERA_ISSUER: `https://auth:${secret}@auth.example.com` } })
  t.teardown(async () => { await server.stop('SIGKILL') })
  const served = await server.waitFor(/tessera is serving/, 30_000).then(() => true, () => false)
  if (!served) await server.closed
  t.equal(server.child.exitCode, 1, 'the start stops')
  t.equal(server.stderr(), 'tessera: TESSERA_ISSUER="<hidden>" is invalid: expected an http(s) URL without query or fragment, with no user name or password\n', 'in one line naming the setting')
  t.notMatch(server.output(), secret, 'without the password')
})

t.test('a port already taken is named by the setting that asked for it', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { taken.close() })
  const port = String((taken.address() as AddressInfo).port)
  const env = { PATH: process.env.PATH ?? '', DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: 'a'.repeat(43), TESSERA_WORKERS: '1' }
  const onPort = await runProcess(process.execPath, [SERVER_ENTRY], { env: { ...env, PORT: port } })
  t.equal(onPort.code, 1)
  t.match(onPort.stderr, `tessera: PORT=${port}: the address is already in use (another process listens there)`)
  const both = await runProcess(process.execPath, [SERVER_ENTRY], { env: { ...env, PORT: '0', TESSERA_METRICS_PORT: port } })
  t.equal(both.code, 1)
  t.match(both.stderr, `tessera: TESSERA_METRICS_PORT=${port}: the address is already in use (another process listens there)`)
})

t.test('a HOST this machine cannot listen on is named in the one line the start fails with, not taken for the database', async (t) => {
  const env = { PATH: process.env.PATH ?? '', DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: 'a'.repeat(43), TESSERA_WORKERS: '1', PORT: '0' }
  const unresolved = await runProcess(process.execPath, [SERVER_ENTRY], { env: { ...env, HOST: 'nosuch.invalid' } })
  t.equal(unresolved.code, 1)
  // It was "tessera: cannot reach the database: getaddrinfo ENOTFOUND nosuch.invalid", with the database reachable.
  t.match(unresolved.stderr, /^tessera: HOST="nosuch\.invalid" does not resolve to an address \(getaddrinfo (ENOTFOUND|EAI_AGAIN) nosuch\.invalid\)\n$/)
  // TEST-NET-1 (RFC 5737): no machine has it.
  const elsewhere = await runProcess(process.execPath, [SERVER_ENTRY], { env: { ...env, HOST: '192.0.2.1' } })
  t.equal(elsewhere.code, 1)
  t.match(elsewhere.stderr, /^tessera: HOST="192\.0\.2\.1" is not an address of this machine \(listen EADDRNOTAVAIL: .*\)\n$/)
  const metrics = await runProcess(process.execPath, [SERVER_ENTRY], { env: { ...env, HOST: '192.0.2.1', TESSERA_METRICS_PORT: '0' } })
  t.equal(metrics.code, 1)
  t.match(metrics.stderr, /^tessera: HOST="192\.0\.2\.1" is not an address of this machine \(listen EADDRNOTAVAIL: .*\)\n$/, 'also when the metrics listener, on HOST too, listens first')
})

t.test('a second instance on the port a running one serves is refused, not let share it: its workers would take half the connections', async (t) => {
  // A port set, as operators set it (port 0 is a port no one else is given, and claims none: cluster/port.ts).
  const port = String(await freePort())
  const env = { DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: 'a'.repeat(43), TESSERA_WORKERS: '2', PORT: port }
  const first = await startServer(t, env)
  // A database of its own, empty of keys and clients: what the refused start wrote would show there.
  const ownUrl = await createTestDatabase(t)
  const own = await testConnection(t, ownUrl)
  const second = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', ...env, DATABASE_URL: ownUrl, PORT: port } })
  // Stopped if it serves after all, rather than outliving a failed test.
  t.teardown(async () => { await second.stop('SIGKILL') })
  t.equal(await second.closed, 1)
  t.match(second.stderr(), `tessera: PORT=${port}: the address is already in use (another process listens there)`)
  t.equal((await fetch(`${first.url}/healthz`)).status, 200, 'the first serves on')
  const written = await sql<{ keys: number, clients: number }>`SELECT (SELECT count(*) FROM signing_keys)::int AS keys, (SELECT count(*) FROM clients)::int AS clients`.execute(own.db)
  t.same(written.rows, [{ keys: 0, clients: 0 }], 'refused before any database work: no first key, no default client')
})

t.test('of two instances started at the same moment on one port, one serves and the other is refused: the port is free between the primary\'s probe and its workers\' listen', async (t) => {
  const port = String(await freePort())
  // Each with its own database, as a second deployment by mistake would be: sharing the port, each answered about half the connections.
  const envs = await Promise.all([0, 1].map(async () => ({ PATH: process.env.PATH ?? '', DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: 'a'.repeat(43), TESSERA_WORKERS: '2', PORT: port, LOG_LEVEL: 'info' })))
  // Spawned together, after both databases exist: both primaries probe the port before either's workers listen.
  const instances = envs.map((env) => spawnProcess(process.execPath, [SERVER_ENTRY], { env }))
  t.teardown(async () => { await Promise.all(instances.map(async (instance) => await instance.stop('SIGKILL'))) })
  // waitFor fails when the process exits before it serves.
  const outcomes = await Promise.all(instances.map(async (instance) => await instance.waitFor(/"msg":"tessera is serving"/, 60_000, 'an instance').then(() => 'serving', () => 'refused')))
  t.same(outcomes.toSorted(), ['refused', 'serving'])
  const refused = instances[outcomes.indexOf('refused')]
  t.equal(await refused?.closed, 1)
  t.match(refused?.stderr(), `tessera: PORT=${port}: the address is already in use (another process listens there)`)
})

const silences: Array<[SilentFrom, string, RegExp]> = [
  // pg-pool's words or its client's, whichever reports the connect timeout first.
  ['start', 'accepts TCP and never answers, not even the start-up', /^tessera: cannot reach the database: (timeout exceeded when trying to connect|Connection terminated due to connection timeout)\n$/],
  // The words a worker's 503 logs for a statement the database left unanswered.
  ['first-statement', 'lets the start in and goes silent at its first statement', /^tessera: cannot reach the database: the database did not answer within \d+ ms\n$/]
]
for (const [silentFrom, what, line] of silences) {
  t.test(`a database that ${what} fails the start in one line naming it, not a hang: the orchestrator restarts the instance`, async (t) => {
    const relay = await silenceableRelay(t, new URL(await createTestDatabase(t)), { silentFrom })
    const server = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: relay.url, TESSERA_KEK: 'a'.repeat(43), TESSERA_WORKERS: '1', PORT: '0' } })
    t.teardown(async () => { await server.stop('SIGKILL') })
    // The harness's deadline, far past the start's own bounds: before, the silenced start hung here with nothing logged.
    const deadline = new Promise<'hung'>((resolve) => { setTimeout(() => resolve('hung'), 90_000).unref() })
    t.equal(await Promise.race([server.closed, deadline]), 1, 'the start stops, exit 1')
    t.match(server.stderr(), line)
  })
}

t.test('a start while another instance\'s key work holds the keys\' lock (a revoke ending many sessions) serves, rather than failing at the start\'s statement timeout', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env = { DATABASE_URL: databaseUrl, TESSERA_KEK: 'a'.repeat(43), TESSERA_WORKERS: '1' }
  // The first start makes the key that signs.
  await (await startServer(t, env)).stop()
  const { pool } = await testConnection(t, databaseUrl)
  const holder = await pool.connect()
  t.teardown(() => { holder.release(true) })
  await holder.query('SELECT pg_advisory_lock($1)', [KEYS_LOCK])
  // Before, the start waited on the lock and failed at its 10 s statement timeout: "failed to start: canceling statement due to statement timeout".
  const server = await startServer(t, env)
  t.equal((await fetch(`${server.url}/healthz`)).status, 200, 'serving while the lock is held')
})

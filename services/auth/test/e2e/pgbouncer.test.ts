/**
 * Tessera through a real PgBouncer, as docs/operators.md ("Behind PgBouncer")
 * has it: session pooling serves, a pooler that refuses a connection is the
 * database out of reach (503, "cannot reach the database"), and transaction
 * pooling, under which the LISTEN connection hears nothing, refuses the start.
 */
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import pg from 'pg'
import t, { type Test } from 'tap'
import { freePort, request, spawnProcess } from '@tessera/testkit'
import { isDatabaseUnavailable } from '../../src/errors.js'
import { createTestDatabase } from '../helpers/db.js'
import { REPO_ROOT, tempDir } from '../helpers/gateway.js'
import { loginOver, signUpOver, within } from '../helpers/http.js'
import { runCli, SERVER_ENTRY, startServer } from '../helpers/server.js'

/** The pgbouncer binary: on PATH or where Debian puts it. Throws when absent: these tests never skip. */
function pgbouncerBinary (): string {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/local/sbin']) {
    if (existsSync(join(dir, 'pgbouncer'))) return join(dir, 'pgbouncer')
  }
  throw new Error('pgbouncer is not installed (apt-get install pgbouncer): the PgBouncer tests need a real one')
}

/**
 * A PgBouncer in front of `databaseUrl`'s server (over TCP), its settings
 * added to the [pgbouncer] section; returns the URL of the same database
 * through it. As root it runs as nobody (it refuses root), so its files are
 * readable by all: a test database's password. A URL with no password (a
 * DATABASE_URL to a server that trusts its user) gets a PgBouncer that
 * trusts it too: with SCRAM it would ask the client for a password it has
 * none of.
 */
async function startPgBouncer (t: Test, databaseUrl: string, settings: Record<string, string>): Promise<string> {
  const binary = pgbouncerBinary()
  const server = new URL(databaseUrl)
  const database = server.pathname.slice(1)
  const user = decodeURIComponent(server.username)
  const password = decodeURIComponent(server.password)
  const dir = tempDir(t, 'pgbouncer')
  chmodSync(dir, 0o755)
  const port = await freePort()
  const quoted = (value: string): string => `"${value.replaceAll('"', '""')}"`
  writeFileSync(join(dir, 'users.txt'), `${quoted(user)} ${quoted(password)}\n`, { mode: 0o644 })
  const ini = [
    '[databases]',
    `${database} = host=${server.hostname} port=${server.port === '' ? '5432' : server.port} dbname=${database}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    `auth_type = ${password === '' ? 'trust' : 'scram-sha-256'}`,
    `auth_file = ${join(dir, 'users.txt')}`,
    ...Object.entries(settings).map(([name, value]) => `${name} = ${value}`)
  ].join('\n')
  writeFileSync(join(dir, 'pgbouncer.ini'), `${ini}\n`, { mode: 0o644 })
  const asRoot = process.getuid?.() === 0 ? ['-u', 'nobody'] : []
  const bouncer = spawnProcess(binary, [...asRoot, join(dir, 'pgbouncer.ini')], { env: { PATH: process.env.PATH ?? '' } })
  t.teardown(async () => { await bouncer.stop('SIGTERM') })
  await bouncer.waitFor(/listening on 127\.0\.0\.1:\d+/, 15_000, 'pgbouncer')
  const through = new URL(`postgres://127.0.0.1:${port}/${database}`)
  through.username = server.username
  through.password = server.password
  return through.toString()
}

t.test('session pooling: Tessera serves, and PgBouncer refusing a connection is the database out of reach, not a fault', async (t) => {
  const bouncerUrl = await startPgBouncer(t, await createTestDatabase(t), { pool_mode: 'session', max_client_conn: '30', default_pool_size: '30' })
  const server = await startServer(t, { DATABASE_URL: bouncerUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '1', TESSERA_RATE_LIMIT: '1000000' })
  await signUpOver(server.url, 'bounced', 'correct horse battery')
  const { access_token: accessToken } = await loginOver(server.url, 'bounced', 'correct horse battery')

  // Every connection PgBouncer still admits, taken: the next one is refused (FATAL 08P01).
  const held: pg.Client[] = []
  t.teardown(async () => { for (const client of held) await client.end().catch(() => {}) })
  let refusal: unknown
  while (refusal === undefined && held.length < 40) {
    const client = new pg.Client({ connectionString: bouncerUrl })
    client.on('error', () => {})
    try {
      await client.connect()
      held.push(client)
    } catch (err) {
      refusal = err
    }
  }
  t.match(refusal, { message: /no more connections allowed \(max_client_conn\)/, code: '08P01', severity: 'FATAL' }, 'PgBouncer is full')
  // notes judges it as Tessera does; Postgres's own 08P01, an ERROR on a connection that goes on, stays a fault for both.
  const notes = await import(pathToFileURL(join(REPO_ROOT, 'services/notes/dist/db.js')).href) as { isDatabaseOutOfReach: (err: unknown) => boolean }
  t.ok(notes.isDatabaseOutOfReach(refusal), 'notes: out of reach')
  const direct = held[0] as pg.Client
  await direct.query({ name: 'one_parameter', text: 'SELECT $1::int AS n', values: [1] })
  const mismatch = await direct.query({ name: 'one_parameter', text: 'SELECT $1::int AS n', values: [1, 2] }).then(() => undefined, (err: unknown) => err)
  t.match(mismatch, { code: '08P01', severity: 'ERROR' })
  t.notOk(isDatabaseUnavailable(mismatch), 'Tessera: a fault')
  t.notOk(notes.isDatabaseOutOfReach(mismatch), 'notes: a fault')

  const cli = await runCli(['users', 'list'], { DATABASE_URL: bouncerUrl })
  t.equal(cli.code, 1)
  t.match(cli.stderr, /cannot reach the database: no more connections allowed \(max_client_conn\)/, 'the CLI says the database is out of reach')

  // Requests at once need more connections than the worker's pool holds (it
  // opens them as needed, up to 20), which PgBouncer refuses: every answer is a 200 or a 503.
  const statuses = new Set<number>()
  const refused = await within(30_000, async () => {
    const replies = await Promise.all(Array.from({ length: 20 }, async () => await request(`${server.url}/v1/sessions`, { headers: { authorization: `Bearer ${accessToken}` } })))
    for (const reply of replies) statuses.add(reply.status)
    return replies.some((reply) => reply.status !== 200)
  }, 250)
  t.ok(refused !== undefined, 'a request needed a connection PgBouncer refused')
  t.same([...statuses].sort(), [200, 503], `every answer a 200 or a 503 (saw ${[...statuses].join(', ')})`)
})

t.test('transaction pooling: the start is refused, naming session pooling', async (t) => {
  const bouncerUrl = await startPgBouncer(t, await createTestDatabase(t), { pool_mode: 'transaction' })
  const server = spawnProcess(process.execPath, [SERVER_ENTRY], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', DATABASE_URL: bouncerUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '1' }
  })
  t.teardown(async () => { await server.stop('SIGKILL') })
  const ended = await Promise.race([server.exited, new Promise<'serving'>((resolve) => {
    server.waitFor(/"msg":"tessera is serving"/, 60_000).then(() => resolve('serving'), () => {})
  })])
  t.equal(ended, 1, 'the server exits 1 rather than serve')
  t.match(server.stderr(), /tessera: failed to start: the LISTEN connection did not hear a NOTIFY sent from another connection within 5000 ms: a connection pooler in transaction or statement mode is in the way \(PgBouncer's pool_mode\); Tessera needs session pooling/)
})

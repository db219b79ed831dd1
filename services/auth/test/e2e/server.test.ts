import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { clusterDir, removeDataDirAtEnd, requestLineOf, startServer, runCli } from '../helpers/server.js'
import { lockWaiters } from '../helpers/db.js'
import { within } from '../helpers/http.js'

const PASSWORD = 'correct horse battery'

// initdb and two cold starts of the server: on a machine at load 15 more than
// tap's 180 s, which is not what this file tests.
t.setTimeout(600_000)

function postgresRunningOn (dataDir: string): boolean {
  const pgdata = clusterDir(dataDir)
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
  return out.split('\n').some((line) => line.includes('postgres') && line.includes(pgdata))
}

/** The postmaster running on the cluster, as its postmaster.pid names it: its pid and start time. */
function postmasterOf (dataDir: string): string {
  const [pid, , startedAt] = readFileSync(path.join(clusterDir(dataDir), 'postmaster.pid'), 'utf8').split('\n')
  return `${pid ?? ''}@${startedAt ?? ''}`
}

/** initdb writes PG_VERSION once: the same file (inode and time) after a restart means the cluster was reused, not made anew. */
function clusterIdentity (dataDir: string): string {
  const { ino, mtimeMs } = statSync(path.join(clusterDir(dataDir), 'PG_VERSION'))
  return `${ino}@${mtimeMs}`
}

t.test('embedded Postgres: first start, SIGTERM drains an in-flight request, second start reuses .data', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tessera-server-'))
  const env = { TESSERA_DATA_DIR: dataDir }
  // A failed run kills the server with SIGKILL, which leaves its Postgres behind.
  removeDataDirAtEnd(t, dataDir)

  const first = await startServer(t, env, { timeoutMs: 180_000 })
  t.equal((await fetch(`${first.url}/readyz`)).status, 200)
  await fetch(`${first.url}/v1/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'sam', password: PASSWORD }) })
  const tokens = await (await fetch(`${first.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'password', username: 'sam', password: PASSWORD }) })).json() as { refresh_token: string, access_token: string }

  // Hold the session's row lock so the refresh below is in flight when SIGTERM arrives.
  const url = (await runCli(['db', 'url'], env)).stdout.trim()
  t.match(url, /^postgres:\/\/tessera:[^@]+@127\.0\.0\.1:\d+\/tessera\?host=%2F[^&]+$/, 'the URL names the server\'s Unix socket directory')
  const blocker = new pg.Client({ connectionString: url })
  await blocker.connect()
  const { rows: [over] } = await blocker.query<{ address: string | null }>('SELECT inet_server_addr() AS address')
  t.equal(over?.address, null, 'and a client of that URL connects through the socket, not TCP')
  await blocker.query('BEGIN')
  await blocker.query('SELECT * FROM sessions FOR UPDATE')
  const inFlight = fetch(`${first.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }) })
  const watcher = new pg.Client({ connectionString: url })
  await watcher.connect()
  t.ok(await within(30_000, async () => await lockWaiters(watcher) >= 1) !== undefined, 'the refresh waits for the session\'s row')
  await watcher.end()
  first.process.kill('SIGTERM')
  // Every HTTP worker logs its own drain: the one holding the refresh among them.
  const workers = Number(/"workers":(\d+)/.exec(first.output())?.[1])
  const workersDraining = (): number => first.output().split('\n').filter((line) => line.includes('"msg":"draining"') && line.includes('"why":')).length
  t.ok(workers >= 1 && await within(30_000, async () => workersDraining() >= workers) !== undefined, 'every worker drains while the refresh is held')
  await blocker.query('COMMIT')
  await blocker.end()
  const response = await inFlight
  t.equal(response.status, 200, 'the in-flight refresh completed')
  t.equal(await first.exited, 0, 'exit 0 after draining', { output: first.output().slice(-3000) })
  // The exit can be seen before the last lines are read from the pipe.
  await first.closed
  t.match(first.output(), /"msg":"draining"/)
  t.match(first.output().trimEnd().split('\n').at(-1), /"embedded_postgres_stopped":true,"msg":"stopped"\}$/, 'the last line says the stop finished')
  t.notOk(postgresRunningOn(dataDir), 'the embedded Postgres was stopped')

  // Reuse is shown by what persists, not by how fast the restart is (a
  // busy machine can make any bound fail): the same cluster, and below, the
  // first run's key, KEK and rows.
  const cluster = clusterIdentity(dataDir)
  const second = await startServer(t, env, { timeoutMs: 120_000 })
  t.equal(clusterIdentity(dataDir), cluster, 'second start reuses the cluster in .data rather than making a new one')
  const me = await fetch(`${second.url}/v1/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(me.status, 200, 'a token from the first run still verifies: the key and the KEK persisted in .data')
  const login = await fetch(`${second.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'password', username: 'sam', password: PASSWORD }) })
  t.equal(login.status, 200, 'the user from the first run is still there')

  // Postgres stopped under a running instance (a restart, a failover): what
  // needs it answers 503 with Retry-After (a stopped server leaves no socket
  // file, so its clients meet ENOENT), what is in memory keeps serving, and
  // the instance serves again once Postgres is back, with no restart of its own.
  const fresh = await login.json() as { refresh_token: string, access_token: string }
  await runCli(['db', 'stop'], env)
  t.notOk(postgresRunningOn(dataDir), 'Postgres is down under the running server')
  const post = async (pathname: string, body: object): Promise<Response> =>
    await fetch(`${second.url}${pathname}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const outage = {
    login: await post('/oauth/token', { grant_type: 'password', username: 'sam', password: PASSWORD }),
    refresh: await post('/oauth/token', { grant_type: 'refresh_token', refresh_token: fresh.refresh_token }),
    signUp: await post('/v1/users', { username: 'tess', password: PASSWORD }),
    me: await fetch(`${second.url}/v1/me`, { headers: { authorization: `Bearer ${fresh.access_token}` } })
  }
  for (const [what, response] of Object.entries(outage)) {
    t.equal(response.status, 503, `${what}: 503 while Postgres is down`)
    t.ok(Number(response.headers.get('retry-after')) > 0, `${what}: with Retry-After`)
  }
  t.same(await outage.refresh.json(), { error: 'temporarily_unavailable', error_description: 'the service is unavailable for a moment; retry later' }, 'in the OAuth error format on /oauth/token')
  t.match(await outage.me.json(), { status: 503, title: 'Service Unavailable' })
  const readyz = await fetch(`${second.url}/readyz`)
  t.equal(readyz.status, 503, 'not ready')
  const jwks = await fetch(`${second.url}/.well-known/jwks.json`)
  t.equal(jwks.status, 200, 'the JWKS is served from memory')
  // Read once each of these requests' own line is in: what a worker logged while serving one is written before it, and may reach the output after the answer.
  for (const response of [...Object.values(outage), readyz, jwks]) await second.logOf(1, requestLineOf(response.headers.get('x-request-id')))
  t.notMatch(second.output(), /"level":50/, 'no error logged: an outage is not a fault')
  await runCli(['db', 'start'], env)
  t.equal((await runCli(['db', 'url'], env)).stdout.trim(), url, 'Postgres restarts where it listened before (its port, its socket): the same URL as in the first run')
  const back = await post('/oauth/token', { grant_type: 'refresh_token', refresh_token: fresh.refresh_token })
  t.equal(back.status, 200, 'Postgres back: the refresh refused during the outage now succeeds')
  t.equal((await fetch(`${second.url}/readyz`)).status, 200, 'ready again')
  // The Postgres running now is the one `db start` started, not the one this instance started: its user keeps it when the instance stops.
  const dbStarts = postmasterOf(dataDir)
  t.equal(await second.stop('SIGINT'), 0)
  await second.closed
  const last = second.output().trimEnd().split('\n').at(-1)
  t.match(last, /"embedded_postgres_stopped":false,"msg":"stopped"\}$/, 'the instance stops no Postgres it did not start')
  t.match(last, /"embedded_postgres_left_running":"the embedded Postgres this instance started was stopped while it ran/, 'and says why it left the one running, on that last line')
  t.equal(postmasterOf(dataDir), dbStarts, '`db start`\'s Postgres is still running, the same postmaster')
  t.ok(postgresRunningOn(dataDir))

  // A server that adopted a Postgres already running leaves it running, and its last line says so.
  const third = await startServer(t, env, { timeoutMs: 120_000 })
  t.equal(await third.stop(), 0)
  await third.closed
  t.match(third.output().trimEnd().split('\n').at(-1), /"embedded_postgres_stopped":false,"msg":"stopped"\}$/, 'an adopted Postgres: the last line says it was not stopped')
  t.ok(postgresRunningOn(dataDir), 'and it was not')

  // The Postgres an instance started, stopped under it and not started again: the instance's own stop finds nothing to stop, and stops cleanly.
  await runCli(['db', 'stop'], env)
  const fourth = await startServer(t, env, { timeoutMs: 120_000 })
  t.ok(postgresRunningOn(dataDir), 'the instance started Postgres')
  await runCli(['db', 'stop'], env)
  t.equal(await fourth.stop(), 0, 'exit 0')
  await fourth.closed
  t.match(fourth.output().trimEnd().split('\n').at(-1), /"embedded_postgres_stopped":false,"msg":"stopped"\}$/)
  t.notMatch(fourth.output(), /"level":50/, 'no error: its Postgres already stopped is no failure of the stop')
})

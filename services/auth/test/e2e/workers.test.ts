/**
 * One instance with TESSERA_WORKERS=2, as real processes: two HTTP workers
 * serve, and what is in memory keeps its per-instance meaning. Every request
 * here opens a new connection, which the kernel hands to either worker (each
 * listens on the port itself, cluster/port.ts), and the log lines (each
 * carries its process's pid) show which served what. Which worker takes a
 * connection is its hash's choice, not a turn: a check that both served sends
 * enough requests that one worker taking them all is as likely as 1 in 2^15
 * or less.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { getPriority } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config.js'
import { workerPoolSize } from '../../src/cluster/pool.js'
import { createTestDatabase } from '../helpers/db.js'
import { hashingSettingsOf, instancePids, requestLineOf, runCli, startServer, type RunningServer } from '../helpers/server.js'
import { within } from '../helpers/http.js'

interface Reply { status: number, body: string, headers: Record<string, string | string[] | undefined> }

/** One request on a connection of its own (no keep-alive agent). */
async function fresh (url: string, method = 'GET', body?: unknown): Promise<Reply> {
  return await new Promise<Reply>((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = request(url, { method, agent: false, headers: payload === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }))
    })
    req.on('error', reject)
    req.setTimeout(5000, () => req.destroy(new Error(`no answer from ${url} within 5 s`)))
    req.end(payload)
  })
}

interface LogLine { pid: number, level: number, code?: number | null, msg: string, retry_in_ms?: number, route?: string, status?: number, transition?: string, kid?: string, hashing_pid?: number, priority?: number, metrics?: string }

/** The whole log lines so far: the last may be half written. */
function logLines (server: RunningServer): LogLine[] {
  return server.output().split('\n').slice(0, -1).filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogLine)
}

const isRequestTo = (route: string) => (line: string): boolean => {
  if (!line.startsWith('{')) return false
  const { msg, route: logged } = JSON.parse(line) as LogLine
  return msg === 'request' && logged === route
}

function servedBy (server: RunningServer, route: string): Set<number> {
  return new Set(logLines(server).filter((l) => l.msg === 'request' && l.route === route).map((l) => l.pid))
}

/**
 * The processes that served `route`, once the request lines of all `answered`
 * requests to it are in: a worker writes a request's line after its answer
 * has gone, so a line read at once may be missing, and with it a worker.
 */
async function servedAll (server: RunningServer, route: string, answered: number): Promise<Set<number>> {
  await server.logOf(answered, isRequestTo(route))
  return servedBy(server, route)
}

/** Waits for the request lines of these answers (by X-Request-Id): every line their workers logged while serving them is in before. */
async function loggedAll (server: RunningServer, replies: Reply[]): Promise<void> {
  for (const reply of replies) await server.logOf(1, requestLineOf(String(reply.headers['x-request-id'])))
}

/** A pid read from the log, or a failure: process.kill(0) would signal this test's own process group. */
function pidOf (pid: number | undefined): number {
  if (pid === undefined || pid <= 0) throw new Error('no such process in the log')
  return pid
}

function sample (metrics: string, series: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? NaN : Number(line.slice(series.length + 1))
}

/**
 * The primary's own /metrics listener (TESSERA_METRICS_PORT=0 picks a port):
 * a scrape there never lands on a worker a test has stopped.
 */
function metricsUrlOf (server: RunningServer): string {
  return logLines(server).find((l) => l.msg === 'tessera is serving')?.metrics ?? 'no metrics listener was logged'
}

/**
 * The names whose login attempt is counted: a login past its worker's shed
 * check counts its attempt, then asks the hashing process for its verify at
 * once; a login shed by the worker touches no row. With the hashing process
 * stopped (SIGSTOP), its queue cannot be read, so this is how a test knows
 * which logins it holds.
 */
async function attemptsCounted (databaseUrl: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    return (await client.query<{ username: string }>('SELECT username FROM login_throttle WHERE failures > 0 ORDER BY username')).rows.map((r) => r.username)
  } finally {
    await client.end()
  }
}

function baseEnv (databaseUrl: string): Record<string, string> {
  return { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2' }
}

t.test('TESSERA_WORKERS: auto is one per core, else a whole number from 1', async (t) => {
  // The cores config counted: the affinity, or a CPU quota rounded up (util/cpu-budget.ts, test/e2e/container-limits.test.ts), not availableParallelism().
  const { cores } = loadConfig({})
  t.equal(loadConfig({}).workers, cores, 'unset is auto')
  t.equal(loadConfig({ TESSERA_WORKERS: 'auto' }).workers, cores)
  t.equal(loadConfig({ TESSERA_WORKERS: '3' }).workers, 3)
  for (const bad of ['0', '-1', '1.5', 'two', '257']) {
    t.throws(() => loadConfig({ TESSERA_WORKERS: bad }), new ConfigError('TESSERA_WORKERS', 'auto or a whole number from 1 to 256', bad))
  }
  t.equal(loadConfig({}).hashConcurrency, cores, 'hashing uses every core')
  t.equal(loadConfig({ TESSERA_HASH_CONCURRENCY: '3' }).hashQueueDepth, 75, 'about half a second of hashing waits: 25 per slot')
  t.same([1, 2, 5, 8].map(workerPoolSize), [20, 10, 4, 4], 'the instance\'s 20 connections shared, at least 4 a worker')
})

t.test('two workers: one per-IP budget, one scrape for the instance, key changes reach both, jobs run once', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env: Record<string, string> = { ...baseEnv(databaseUrl), TESSERA_RATE_LIMIT: '20', TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEY_PUBLISH_LEAD: '4s', TESSERA_KEY_ROTATION: '4s' }
  const server = await startServer(t, env)
  t.match(server.output(), /"workers":2.*"msg":"tessera is serving"/)

  // A garbage token is a cheap, well-formed revocation: 200, no hashing.
  const statuses: number[] = []
  for (let i = 0; i < 23; i++) statuses.push((await fresh(`${server.url}/oauth/revoke`, 'POST', { token: 'not-a-token' })).status)
  t.same(statuses, [...Array(20).fill(200), 429, 429, 429], 'twenty pass, then the budget is spent, whichever worker answers')
  const workers = await servedAll(server, '/oauth/revoke', statuses.length)
  t.equal(workers.size, 2, 'both workers served them')
  t.notOk(workers.has(server.process.pid ?? 0), 'the primary serves no HTTP')

  const metrics = (await fresh(`${server.url}/metrics`)).body
  t.equal(sample(metrics, 'tessera_http_request_duration_seconds_count{method="POST",route="/oauth/revoke",status="200"}'), 20, 'one scrape counts both workers\' 200s')
  t.equal(sample(metrics, 'tessera_http_request_duration_seconds_count{method="POST",route="/oauth/revoke",status="429"}'), 3, 'and their 429s')
  t.equal(sample(metrics, 'tessera_rate_limited_total{route="/oauth/revoke"}'), 3)
  t.equal(sample(metrics, 'tessera_hash_in_flight'), 0, 'the hashing process\'s queue is in the scrape')
  t.ok(sample(metrics, 'tessera_signing_keys{state="current"}') === 1, 'the signing keys are counted once, not once per worker')

  // A key made by an operator elsewhere: every worker publishes it, within a second or so on a quiet
  // machine. Only a worker never told should run out the wait (3 s was the machine's speed, three test
  // files at once); whether NOTIFY or the 1 s key check told it is jobs.test's and key-commands.test's.
  const rotated = await runCli(['keys', 'rotate', '--now', '--json'], { DATABASE_URL: databaseUrl, TESSERA_KEK: env.TESSERA_KEK ?? '' })
  t.equal(rotated.code, 0, rotated.stderr)
  const promoted = String((JSON.parse(rotated.stdout) as { promoted: string }).promoted)
  let jwksFetched = 0
  const everywhere = await within(15_000, async () => {
    const bodies: string[] = []
    for (let i = 0; i < 16; i++) bodies.push((await fresh(`${server.url}/.well-known/jwks.json`)).body)
    jwksFetched += bodies.length
    return bodies.every((body) => body.includes(promoted))
  }, 100)
  t.ok(everywhere !== undefined, 'both workers publish the new key')
  t.equal((await servedAll(server, '/.well-known/jwks.json', jwksFetched)).size, 2, 'the JWKS came from both workers')

  // The schedule runs in the primary alone: each transition made and logged once, by the primary.
  const scheduled = (): LogLine[] => logLines(server).filter((l) => l.msg === 'signing key transition')
  t.ok(await within(60_000, async () => scheduled().length >= 3, 200) !== undefined, 'the schedule makes three transitions')
  const transitions = scheduled()
  t.same([...new Set(transitions.map((l) => l.pid))], [server.process.pid], 'every transition made by the primary')
  const seen = transitions.map((l) => `${l.kid ?? ''} ${l.transition ?? ''}`)
  t.equal(new Set(seen).size, seen.length, 'no transition twice')
  t.equal(await server.stop('SIGTERM'), 0, 'drains and exits 0')
  // Read once the output is drained: a line logged while a request ran can reach it after the answer.
  await server.closed
  t.notMatch(server.output(), /"level":50/, 'no error was logged')
})

t.test('the instance\'s counters never go down: a worker too slow to answer counts with its last answer, one that exits leaves its counts behind', async (t) => {
  const server = await startServer(t, { ...baseEnv(await createTestDatabase(t)), TESSERA_RATE_LIMIT: '1000000', TESSERA_METRICS_PORT: '0' })
  const revoked = async (): Promise<number> => sample((await fresh(metricsUrlOf(server))).body, 'tessera_http_request_duration_seconds_count{method="POST",route="/oauth/revoke",status="200"}')
  for (let i = 0; i < 16; i++) t.equal((await fresh(`${server.url}/oauth/revoke`, 'POST', { token: 'not-a-token' })).status, 200)
  const [slow, other] = await servedAll(server, '/oauth/revoke', 16)
  t.ok(slow !== undefined && other !== undefined, 'both workers served them')
  t.equal(await revoked(), 16, 'one scrape counts both')

  process.kill(pidOf(slow), 'SIGSTOP')
  t.teardown(() => { try { process.kill(pidOf(slow), 'SIGCONT') } catch {} })
  t.equal(await revoked(), 16, 'a worker that does not answer in time still counts, with its last answer')
  process.kill(pidOf(slow), 'SIGCONT')

  process.kill(pidOf(other), 'SIGTERM')
  const exited = (): LogLine[] => logLines(server).filter((l) => l.msg === 'an HTTP worker exited; starting another')
  t.ok(await within(15_000, async () => exited().length === 1, 100) !== undefined, 'a worker recycled')
  t.equal(await revoked(), 16, 'what it counted stays in the instance\'s count')
  for (let i = 0; i < 2; i++) t.equal((await fresh(`${server.url}/oauth/revoke`, 'POST', { token: 'not-a-token' })).status, 200)
  t.equal(await revoked(), 18, 'and later requests add to it')
})

t.test('a worker recycled with SIGTERM hands over its final counts: the instance loses none of what it counted since the last scrape', async (t) => {
  const server = await startServer(t, { ...baseEnv(await createTestDatabase(t)), TESSERA_RATE_LIMIT: '1000000', TESSERA_METRICS_PORT: '0' })
  const healthz = async (): Promise<number> => sample((await fresh(metricsUrlOf(server))).body, 'tessera_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"}')
  t.ok(Number.isNaN(await healthz()), 'no /healthz counted yet: the workers answered this scrape with none')
  for (let i = 0; i < 20; i++) t.equal((await fresh(`${server.url}/healthz`)).status, 200)
  const served = await servedAll(server, '/healthz', 20)
  t.equal(served.size, 2, 'both workers served them, and no scrape has asked either since')
  for (const pid of served) process.kill(pid, 'SIGTERM')
  const exited = (): LogLine[] => logLines(server).filter((l) => l.msg === 'an HTTP worker exited; starting another')
  t.ok(await within(15_000, async () => exited().length === 2, 100) !== undefined, 'both workers recycled')
  t.equal(await healthz(), 20, 'every request they answered is counted')
})

t.test('a scrape waiting on a worker that dies ends with the death, not at the worker timeout', async (t) => {
  const server = await startServer(t, { ...baseEnv(await createTestDatabase(t)), TESSERA_RATE_LIMIT: '1000000', TESSERA_METRICS_PORT: '0' })
  for (let i = 0; i < 4; i++) t.equal((await fresh(`${server.url}/healthz`)).status, 200)
  const [stuck] = await servedAll(server, '/healthz', 4)
  t.ok(stuck !== undefined)
  process.kill(pidOf(stuck), 'SIGSTOP')
  t.teardown(() => { try { process.kill(pidOf(stuck), 'SIGKILL') } catch {} })
  const started = Date.now()
  const scrape = fresh(metricsUrlOf(server))
  await new Promise((resolve) => setTimeout(resolve, 300))
  process.kill(pidOf(stuck), 'SIGKILL')
  t.equal((await scrape).status, 200)
  const took = Date.now() - started
  // cluster/instance-metrics.ts's WORKER_METRICS_TIMEOUT_MS, written out: importing it loads that file into
  // this process, where none of its code runs, and coverage counts it uncovered (the server runs dist/).
  const WORKER_METRICS_TIMEOUT_MS = 2000
  // Waiting out WORKER_METRICS_TIMEOUT_MS for a worker already gone held every scrape during a recycle that long:
  // that answer comes no sooner than the timeout after the scrape began, this one any time before it.
  t.ok(took < WORKER_METRICS_TIMEOUT_MS, `answered ${took} ms after it began, after the worker died at 300 ms and before the ${WORKER_METRICS_TIMEOUT_MS} ms timeout`)
})

t.test('two workers share one hashing queue at a lower priority; a dead worker is replaced; a dead primary takes them all', async (t) => {
  // No bound in time: hashing is frozen below for longer than any such bound, and the logins admitted meanwhile must finish.
  const databaseUrl = await createTestDatabase(t)
  const env = { ...baseEnv(databaseUrl), TESSERA_HASH_CONCURRENCY: '1', TESSERA_HASH_QUEUE_DEPTH: '3', TESSERA_HASH_MAX_WAIT_MS: '0', TESSERA_RATE_LIMIT: '1000000', TESSERA_METRICS_PORT: '0' }
  const server = await startServer(t, env)
  const hashing = logLines(server).find((l) => l.msg === 'hashing process started')
  const hashingPid = hashing?.hashing_pid ?? 0
  t.ok(hashingPid > 0, 'the hashing process is its own process')
  // TESSERA_HASH_NICE (default 10) is added to the instance's own nice value (this test's, inherited), at most 19.
  const lowered = Math.min(19, getPriority() + 10)
  t.equal(hashing?.priority, lowered, `at nice ${lowered}`)
  const login = async (username: string): Promise<Reply> => await fresh(`${server.url}/oauth/token`, 'POST', { grant_type: 'password', username, password: 'some password' })
  t.equal((await login('warm-up')).status, 400, 'a login hashes (an unknown user costs a verify too)')
  const threads = readdirSync(`/proc/${hashingPid}/task`).filter((tid) => Number(tid) !== hashingPid)
  // /proc/PID/task/TID/stat: the nice value is the 19th field, the 17th after the ")" that ends the command name.
  const niceOf = (tid: number | string): number => Number(readFileSync(`/proc/${hashingPid}/task/${tid}/stat`, 'utf8').split(') ')[1]?.split(' ')[16])
  const nice = threads.map(niceOf)
  t.ok(threads.length > 1 && nice.every((n) => n === lowered), `every other thread of the hashing process, the argon2 pool included, at nice ${lowered} (${nice.join(' ')})`)
  t.equal(niceOf(hashingPid), getPriority(), 'its main thread, which admits and hands out the hashes, at the instance\'s priority')

  // Hashing frozen: nothing finishes, so what is admitted is what the
  // workers' shares let past: the queue holds one handed to the one hashing
  // thread and three waiting, per instance, two per worker, so once four
  // are in each worker holds two. Stopped, the queue cannot be read: a login
  // held is one whose attempt is counted (attemptsCounted).
  const queuedBefore = sample((await fresh(metricsUrlOf(server))).body, 'tessera_hash_queue_wait_seconds_count')
  process.kill(hashingPid, 'SIGSTOP')
  t.teardown(() => { try { process.kill(hashingPid, 'SIGCONT') } catch {} })
  const pending: Array<Promise<Reply>> = []
  // A login on a worker whose share is full is shed there although the
  // instance has room (each new connection goes to either worker, not in
  // turn): sent again on a new connection, it may land on the other.
  let shedByShare = 0
  for (let i = 0; i < 4; i++) {
    let admitted = false
    for (let tries = 0; tries < 20 && !admitted; tries++) {
      const attempt = login(`queued${i}`)
      const outcome = await Promise.race([
        attempt.then((r) => r.status),
        within(15_000, async () => (await attemptsCounted(databaseUrl)).includes(`queued${i}`), 50).then((ms) => ms === undefined ? 'never' : 'admitted')
      ])
      if (outcome === 'admitted') {
        pending.push(attempt)
        admitted = true
      } else if (outcome === 503) shedByShare++
      else break
    }
    t.ok(admitted, `login ${i + 1} is admitted before the next is sent`)
  }
  const shed = await Promise.all(Array.from({ length: 3 }, async (_, i) => await login(`shed${i}`)))
  t.same(shed.map((r) => r.status), [503, 503, 503], 'past one handed over and three waiting, logins are shed at once, whichever worker takes them')
  t.equal(shed[0]?.headers['retry-after'], '1')
  t.equal(sample((await fresh(metricsUrlOf(server))).body, 'tessera_logins_total{outcome="shed"}'), 3 + shedByShare)
  process.kill(hashingPid, 'SIGCONT')
  t.same((await Promise.all(pending)).map((r) => r.status), [400, 400, 400, 400], 'the admitted logins finish once hashing resumes')
  t.equal(sample((await fresh(metricsUrlOf(server))).body, 'tessera_hash_queue_wait_seconds_count') - queuedBefore, 4, 'the queue started exactly those four')
  for (let i = 0; i < 16 && servedBy(server, '/oauth/token').size < 2; i++) t.equal((await login(`more${i}`)).status, 400)
  // The last login's line may follow its answer.
  t.ok(await within(15_000, async () => servedBy(server, '/oauth/token').size === 2, 50) !== undefined, 'both workers answered logins')

  const [victim] = servedBy(server, '/oauth/token')
  process.kill(pidOf(victim), 'SIGKILL')
  const replaced = await within(15_000, async () => {
    try {
      const statuses = await Promise.all(Array.from({ length: 4 }, async () => (await fresh(`${server.url}/healthz`)).status))
      const serving = servedBy(server, '/healthz')
      return statuses.every((s) => s === 200) && serving.size === 2 && !serving.has(victim ?? 0)
    } catch {
      return false // a connection handed to the dead worker before the primary noticed
    }
  }, 200)
  t.ok(replaced !== undefined, 'the primary starts another worker, and two workers serve again')
  const exits = (): LogLine[] => logLines(server).filter((l) => l.msg === 'an HTTP worker exited; starting another')
  t.same(exits().map((l) => l.level), [50], 'a worker killed is logged as an error')

  // SIGTERM to one worker's pid alone: it drains and exits 0, a recycle on purpose.
  const [recycled] = servedBy(server, '/healthz')
  process.kill(pidOf(recycled), 'SIGTERM')
  t.ok(await within(15_000, async () => exits().length === 2, 100) !== undefined, 'the drained worker is replaced too')
  t.match(exits()[1], { level: 30, code: 0 }, 'and logged at info: nothing went wrong')

  // kill -9 of the primary takes the whole instance, so a gateway moves on instead of meeting half of one.
  const rest = [...servedBy(server, '/healthz'), hashingPid]
  const socketPath = hashingSettingsOf(hashingPid).socketPath ?? ''
  t.ok(existsSync(socketPath), 'the workers\' socket')
  await server.stop('SIGKILL')
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  t.ok(await within(5000, async () => !rest.some(alive), 50) !== undefined, 'the workers and the hashing process exit with the primary')
  t.notOk(existsSync(path.dirname(socketPath)), 'and the socket\'s directory goes with them')
})

t.test('the hashing process dies with logins in hand: they answer 503 with Retry-After, not 500, and another hashing process serves the next', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env = { ...baseEnv(databaseUrl), TESSERA_HASH_CONCURRENCY: '1', TESSERA_HASH_MAX_WAIT_MS: '0', TESSERA_RATE_LIMIT: '1000000', TESSERA_METRICS_PORT: '0' }
  const server = await startServer(t, env)
  const started = (): LogLine[] => logLines(server).filter((l) => l.msg === 'hashing process started')
  const first = started()[0]?.hashing_pid ?? 0
  t.ok(first > 0, 'the hashing process runs')
  t.equal((await fresh(`${server.url}/v1/users`, 'POST', { username: 'hana', password: 'correct horse battery' })).status, 201)
  const login = async (username: string): Promise<Reply> => await fresh(`${server.url}/oauth/token`, 'POST', { grant_type: 'password', username, password: 'correct horse battery' })

  // Frozen, it holds the logins sent now; killed, it never answers them.
  process.kill(first, 'SIGSTOP')
  t.teardown(() => { try { process.kill(first, 'SIGKILL') } catch {} })
  const held = [login('hana'), login('nobody')]
  t.ok(await within(15_000, async () => (await attemptsCounted(databaseUrl)).length === 2, 50) !== undefined, 'both logins are past their workers\' checks, their verifies asked')
  process.kill(first, 'SIGKILL')
  const answers = await Promise.all(held)
  t.same(answers.map((r) => r.status), [503, 503], 'the logins it held: 503')
  t.same(answers.map((r) => r.headers['retry-after']), ['1', '1'], 'with Retry-After')
  t.same(answers.map((r) => (JSON.parse(r.body) as { error: string }).error), ['temporarily_unavailable', 'temporarily_unavailable'])
  await loggedAll(server, answers)
  t.notOk(logLines(server).some((l) => l.msg === 'unexpected error'), 'not logged as a fault of the request')
  const throttle = new pg.Client({ connectionString: databaseUrl })
  await throttle.connect()
  const { rows: counted } = await throttle.query<{ username: string, failures: number }>('SELECT username, failures FROM login_throttle ORDER BY username')
  await throttle.end()
  t.same(counted, [{ username: 'hana', failures: 0 }, { username: 'nobody', failures: 0 }], 'a login whose hash never ran is refunded to the back-off: not a failed guess')

  t.ok(await within(15_000, async () => started().length === 2, 100) !== undefined, 'another hashing process starts')
  const again = await login('hana')
  t.equal(again.status, 200, 'the replacement hashes: the same user logs in', { body: again.body })
  t.not(started()[1]?.hashing_pid, first, 'in a new process')
  const unknown = await login('nobody-after')
  t.equal(unknown.status, 400, 'and an unknown name costs its verify again: the dummy hash lost with the process is made anew', { body: unknown.body })
  t.same(logLines(server).filter((l) => l.msg === 'the hashing process exited; starting another').map((l) => l.level), [50], 'the death itself is logged once, as an error')
})

t.test('a request\'s statement stuck behind a lock is cancelled at TESSERA_DB_STATEMENT_TIMEOUT_MS: 503, and its refresh token is not spent', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const server = await startServer(t, { ...baseEnv(databaseUrl), TESSERA_DB_STATEMENT_TIMEOUT_MS: '1000', TESSERA_RATE_LIMIT: '1000000' })
  t.equal((await fresh(`${server.url}/v1/users`, 'POST', { username: 'lena', password: 'correct horse battery' })).status, 201)
  const tokens = JSON.parse((await fresh(`${server.url}/oauth/token`, 'POST', { grant_type: 'password', username: 'lena', password: 'correct horse battery' })).body) as { refresh_token: string, access_token: string }
  const sid = (JSON.parse(Buffer.from(tokens.access_token.split('.')[1] ?? '', 'base64url').toString()) as { sid: string }).sid
  const refresh = async (): Promise<Reply> => await fresh(`${server.url}/oauth/token`, 'POST', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token })

  // Someone holds the session's row (an operator's transaction left open, a long job): the refresh waits on it.
  const blocker = new pg.Client({ connectionString: databaseUrl })
  await blocker.connect()
  t.teardown(async () => { await blocker.end() })
  await blocker.query('BEGIN')
  await blocker.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [sid])
  const stuck = await refresh()
  t.equal(stuck.status, 503, 'cancelled at the timeout and answered, instead of waiting past the 30 s a client and the gateway wait', { body: stuck.body })
  t.equal(stuck.headers['retry-after'], '1')
  t.equal((JSON.parse(stuck.body) as { error: string }).error, 'temporarily_unavailable')
  await blocker.query('COMMIT')

  const retried = await refresh()
  t.equal(retried.status, 200, 'the rotation was rolled back with the statement: the same token refreshes once the lock is gone', { body: retried.body })
  await loggedAll(server, [stuck, retried])
  t.notOk(logLines(server).some((l) => l.msg === 'unexpected error'), 'not a fault')
})

t.test('a worker that dies before it listens is forked again after a growing pause; one replaced while the database is closed to it serves from the primary\'s keys', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const server = await startServer(t, baseEnv(databaseUrl))
  const hashingPid = logLines(server).find((l) => l.msg === 'hashing process started')?.hashing_pid
  const workers = (): number[] => instancePids(server.process.pid ?? 0).slice(1).filter((pid) => pid !== hashingPid)
  const jwks = (await fresh(`${server.url}/.well-known/jwks.json`)).body

  // No new connection to the database from here: a worker forked now could not read signing_keys.
  const adminUrl = new URL(databaseUrl)
  const name = adminUrl.pathname.slice(1)
  adminUrl.pathname = '/postgres'
  const admin = new pg.Client({ connectionString: adminUrl.href })
  await admin.connect()
  t.teardown(async () => { await admin.end() })
  await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`)
  t.teardown(async () => { await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`) })

  // Each replacement killed the moment it appears, long before it could listen (loading the app alone takes it longer), as a crash at start would end it.
  const seen = new Set(workers())
  process.kill([...seen][0] ?? 0, 'SIGKILL')
  for (let i = 0; i < 3; i++) {
    const appeared = await within(15_000, async () => workers().some((pid) => !seen.has(pid)), 2)
    t.ok(appeared !== undefined, `replacement ${i + 1} is forked`)
    for (const pid of workers().filter((pid) => !seen.has(pid))) {
      seen.add(pid)
      process.kill(pid, 'SIGKILL')
    }
  }
  const failedStarts = (): LogLine[] => logLines(server).filter((l) => l.msg === 'an HTTP worker exited before it listened; starting another after a pause')
  t.ok(await within(15_000, async () => failedStarts().length === 3, 20) !== undefined, 'each is logged')
  t.same(failedStarts().map((l) => [l.level, l.retry_in_ms]), [[50, 500], [50, 1000], [50, 2000]], 'as an error, each with a pause twice the last, not forked again at once')
  t.equal(logLines(server).filter((l) => l.msg === 'an HTTP worker exited; starting another').length, 1, 'only the first, which had listened, was replaced at once')

  // The fourth starts after its pause, with the database still closed to it.
  const serving = async (): Promise<boolean> => {
    const answers = await Promise.all(Array.from({ length: 4 }, async () => await fresh(`${server.url}/.well-known/jwks.json`).catch(() => undefined)))
    const pids = new Set(workers())
    return pids.size === 2 && answers.every((a) => a?.status === 200 && a.body === jwks) && [...servedBy(server, '/.well-known/jwks.json')].filter((pid) => pids.has(pid)).length === 2
  }
  t.ok(await within(30_000, serving, 200) !== undefined, 'both workers serve the same JWKS, the replacement\'s from the keys the primary handed it')
  t.equal((await fresh(`${server.url}/readyz`)).status, 503, 'not ready while the database is closed')
  await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`)
  t.ok(await within(15_000, async () => (await Promise.all([1, 2, 3, 4].map(async () => (await fresh(`${server.url}/readyz`)).status))).every((s) => s === 200), 200) !== undefined, 'ready again once it opens')
})

t.test('workers dying under a stream of new connections strand none of them: each is answered or refused, and the instance serves again', async (t) => {
  const server = await startServer(t, { ...baseEnv(await createTestDatabase(t)), TESSERA_RATE_LIMIT: '1000000' })
  const hashingPid = logLines(server).find((l) => l.msg === 'hashing process started')?.hashing_pid
  const workers = (): number[] => instancePids(server.process.pid ?? 0).slice(1).filter((pid) => pid !== hashingPid)
  // Far past any answer /healthz takes, however loaded the machine: a
  // connection not settled by then is one nobody will answer (node:cluster's
  // round-robin left those open in the primary, held until the client gave up).
  const hangMs = 20_000
  const outcomes = { answered: 0, refused: 0, hung: 0 }
  const streaming = { on: true }
  const stream = async (): Promise<void> => {
    while (streaming.on) {
      await new Promise<void>((resolve) => {
        const req = request(`${server.url}/healthz`, { agent: false }, (res) => {
          res.resume()
          res.on('end', () => { outcomes.answered++; resolve() })
          res.on('error', () => { outcomes.refused++; resolve() })
        })
        req.on('error', () => { outcomes.refused++; resolve() })
        req.setTimeout(hangMs, () => { outcomes.hung++; req.destroy(); resolve() })
        req.end()
      })
    }
  }
  const streams = Array.from({ length: 16 }, stream)
  for (let kill = 0; kill < 8; kill++) {
    await new Promise((resolve) => setTimeout(resolve, 500))
    const alive = workers()
    const victim = alive[kill % Math.max(alive.length, 1)]
    if (victim !== undefined) process.kill(victim, 'SIGKILL')
  }
  streaming.on = false
  await Promise.all(streams)
  t.equal(outcomes.hung, 0, `no connection left unanswered (${outcomes.answered} answered, ${outcomes.refused} refused as their worker died)`)
  t.ok(outcomes.answered > 0, 'the instance answered between the deaths')
  const serving = async (): Promise<boolean> => workers().length === 2 && (await fresh(`${server.url}/healthz`).catch(() => undefined))?.status === 200
  t.ok(await within(30_000, serving, 200) !== undefined, 'two workers serve again')
})

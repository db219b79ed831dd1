/**
 * A shed storm: far more concurrent logins than the hashing queue admits,
 * each client retrying the moment it is refused (as wrk does). The hashing
 * keeps a floor under its rate (one hashing thread at the instance's
 * priority), so logins per second during the storm stay a fair part of what
 * a calm load gets from the same server; every admitted login's wait for its
 * hash stays within TESSERA_HASH_MAX_WAIT_MS (its default), by the server's
 * own histogram; the queue's rate estimate is not talked down by the storm;
 * every refusal is a 503 with Retry-After, and refresh keeps answering.
 */
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { getPriority } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createTestDatabase } from '../helpers/db.js'
import { flood } from '../helpers/flood.js'
import { startServer } from '../helpers/server.js'

const USERS = 40
/**
 * Never shed: two logins at once never wait for the two hashing threads, and
 * the queue admits far more (20 before the first hash, about 35 after, half
 * per worker), so both connections may land on one worker.
 */
const CALM_CONNECTIONS = 2
const STORM_CONNECTIONS = 120
const SECONDS = 6
/** TESSERA_HASH_MAX_WAIT_MS's default. */
const MAX_WAIT_MS = 500

/** /proc/PID/task/TID/stat: the nice value is the 17th field after the ")" that ends the command name. */
function threadNice (pid: number, tid: string): number {
  return Number(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]?.split(' ')[16])
}

t.test('during a shed storm logins keep a fair part of their calm rate, no admitted login waits past the bound, every refusal is 503 + Retry-After, refresh answers', async (t) => {
  const server = await startServer(t, {
    DATABASE_URL: await createTestDatabase(t),
    TESSERA_KEK: randomBytes(32).toString('base64url'),
    // The hashing queue is what sheds here, not the per-IP limit (the storm comes from one address).
    TESSERA_RATE_LIMIT: '1000000',
    // Two hashing threads whatever the machine: one keeps the instance's priority, one is lowered.
    TESSERA_HASH_CONCURRENCY: '2',
    TESSERA_WORKERS: '2'
  })
  const base = server.url
  const json = { 'content-type': 'application/json' }
  const hashingPid = Number(/"hashing_pid":(\d+)/.exec(server.output())?.[1])
  const pool = readdirSync(`/proc/${hashingPid}/task`).filter((tid) => readFileSync(`/proc/${hashingPid}/task/${tid}/comm`, 'utf8').trim() === 'libuv-worker')
  const instanceNice = getPriority()
  t.same(pool.map((tid) => threadNice(hashingPid, tid)).sort((a, b) => a - b), [instanceNice, Math.min(19, instanceNice + 10)],
    'one hashing thread at the instance\'s priority, the other TESSERA_HASH_NICE lower')

  // Three storm connections per name: never the back-off's five attempts of one name in flight.
  const users = Array.from({ length: USERS }, (_, i) => ({ username: `storm${i}`, password: `storm password ${i}` }))
  for (const user of users) {
    const created = await fetch(`${base}/v1/users`, { method: 'POST', headers: json, body: JSON.stringify(user) })
    t.equal(created.status, 201, `${user.username} signed up`)
  }
  const login = await fetch(`${base}/oauth/token`, { method: 'POST', headers: json, body: JSON.stringify({ grant_type: 'password', ...users[0] }) })
  let refreshToken = ((await login.json()) as { refresh_token: string }).refresh_token

  const metricsText = async (): Promise<string> => await (await fetch(`${base}/metrics`)).text()
  const sampleOf = (metrics: string, pattern: string): number => Number(new RegExp(`^${pattern} (\\S+)$`, 'm').exec(metrics)?.[1])

  const calm = await flood(base, CALM_CONNECTIONS, SECONDS, users)
  t.comment(`calm: ${JSON.stringify(calm)}`)
  const calmRate = sampleOf(await metricsText(), 'tessera_hash_rate')
  const storm = flood(base, STORM_CONNECTIONS, SECONDS, users)
  const refreshStatuses: number[] = []
  const stormEnds = Date.now() + SECONDS * 1000
  while (Date.now() < stormEnds) {
    const res = await fetch(`${base}/oauth/token`, { method: 'POST', headers: json, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: refreshToken }) })
    refreshStatuses.push(res.status)
    if (res.status === 200) refreshToken = ((await res.json()) as { refresh_token: string }).refresh_token
    else await res.arrayBuffer()
    await sleep(20)
  }
  const result = await storm
  t.comment(`storm: ${JSON.stringify(result)}; refreshes: ${refreshStatuses.length}`)

  const calmOk = calm.statuses['200'] ?? 0
  const stormOk = result.statuses['200'] ?? 0
  t.same(Object.keys(calm.statuses), ['200'], `the calm spell was all admitted (${calmOk})`)
  // Counts over equal spells, not speed. Un-niced, with every hashing thread
  // lowered, wrk's storm at 64 connections kept 7-13 logins/s against 49 calm
  // (docs/performance-history.md); under `nice -n 15` (make test) the lowered thread
  // is only 4 below the workers, so this guards against a collapse, and the
  // thread priorities above prove the floor. A tenth, not a fifth: with the
  // rest of make test's files beside it, the storm kept 16 % and 19 % (twice
  // in one day; no collapse, which reads near nothing), and the calm spell never shares
  // the machine the same way.
  t.ok(stormOk * 10 >= calmOk, `the storm kept at least a tenth of the calm's logins (${stormOk} against ${calmOk})`)
  t.same(Object.keys(result.statuses).sort(), ['200', '503'], 'logins answered 200 or 503, nothing else')
  t.ok((result.statuses['503'] ?? 0) > stormOk, 'the storm was far beyond the queue: most were shed')
  t.equal(result.shedWithoutRetryAfter, 0, 'every 503 carried Retry-After')
  t.equal(result.errors, 0, 'no connection failed')
  t.ok(result.okAfterFirstShed > 0, `logins still succeeded after the first shed (${result.okAfterFirstShed})`)
  t.ok(refreshStatuses.length > 0, 'refresh was asked during the storm')
  t.ok(refreshStatuses.every((s) => s === 200), `every refresh during the storm succeeded (${refreshStatuses.length})`)

  const metrics = await metricsText()
  const sample = (pattern: string): number => sampleOf(metrics, pattern)
  const outcome = (name: string): number => sample(`tessera_logins_total\\{outcome="${name}"\\}`)
  t.equal(outcome('shed'), (calm.statuses['503'] ?? 0) + (result.statuses['503'] ?? 0), 'every 503 shows in tessera_logins_total{outcome="shed"}')
  t.equal(outcome('ok'), calmOk + stormOk + 1, 'every 200 shows as ok (and the first login)')
  const started = sample('tessera_hash_queue_wait_seconds_count')
  t.ok(started >= calmOk + stormOk, `every login's hash shows in the wait histogram (${started})`)
  t.equal(sample(`tessera_hash_queue_wait_seconds_bucket\\{le="${MAX_WAIT_MS / 1000}"\\}`), started, `no started hash waited longer than ${MAX_WAIT_MS} ms for its slot`)
  // The rate the queue admits by is the hashing threads' CPU cost of a hash:
  // the storm takes their CPU and slows each hash, but does not make one cost
  // more. Estimated from hashes finished per second, it fell with the storm
  // (to 16/s from 55-66 at 16 connections: docs/performance-history.md), the queue
  // shed more and the storm fed itself.
  const stormRate = sample('tessera_hash_rate')
  t.ok(calmRate > 0 && stormRate > 0, `the rate was measured (calm ${calmRate}/s, after the storm ${stormRate}/s)`)
  t.ok(stormRate * 2 >= calmRate, 'the storm did not talk the rate estimate down')
  // Read once the instance has stopped and its output is drained: a worker writes its lines through pino's asynchronous stream, so one logged while a request ran can reach the output after the answer.
  await server.stop()
  await server.closed
  t.notMatch(server.output(), /"level":50/, 'no error was logged')
})

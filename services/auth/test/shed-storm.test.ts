/**
 * A shed storm: far more concurrent logins than the hashing queue holds, each
 * client retrying the moment it is refused (as wrk does). Shedding must stay
 * cheap enough that the hashing process keeps its share: logins still
 * succeed in every part of the storm, every refusal is a 503 with
 * Retry-After, and refresh keeps answering.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createTestDatabase } from './helpers/db.js'
import { flood } from './helpers/flood.js'
import { startServer } from './helpers/server.js'

const USERS = 40
const STORM_CONNECTIONS = 120
const STORM_SECONDS = 6

t.test('during a shed storm logins keep completing, every refusal is 503 + Retry-After, refresh answers', async (t) => {
  const server = await startServer(t, {
    DATABASE_URL: await createTestDatabase(t),
    TESSERA_KEK: randomBytes(32).toString('base64url'),
    // The hashing queue is what sheds here, not the per-IP limit (the storm comes from one address).
    TESSERA_RATE_LIMIT: '1000000',
    // A queue far smaller than the storm: nearly every attempt is refused.
    TESSERA_HASH_QUEUE_DEPTH: '4'
  })
  const base = server.url
  const json = { 'content-type': 'application/json' }
  // Three storm connections per name: never the back-off's five attempts of one name in flight.
  const users = Array.from({ length: USERS }, (_, i) => ({ username: `storm${i}`, password: `storm password ${i}` }))
  for (const user of users) {
    const created = await fetch(`${base}/v1/users`, { method: 'POST', headers: json, body: JSON.stringify(user) })
    t.equal(created.status, 201, `${user.username} signed up`)
  }
  const login = await fetch(`${base}/oauth/token`, { method: 'POST', headers: json, body: JSON.stringify({ grant_type: 'password', ...users[0] }) })
  let refreshToken = ((await login.json()) as { refresh_token: string }).refresh_token

  const storm = flood(base, STORM_CONNECTIONS, STORM_SECONDS, users)
  const refreshStatuses: number[] = []
  const stormEnds = Date.now() + STORM_SECONDS * 1000
  while (Date.now() < stormEnds) {
    const res = await fetch(`${base}/oauth/token`, { method: 'POST', headers: json, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: refreshToken }) })
    refreshStatuses.push(res.status)
    if (res.status === 200) refreshToken = ((await res.json()) as { refresh_token: string }).refresh_token
    else await res.arrayBuffer()
    await sleep(20)
  }
  const result = await storm
  t.comment(`storm: ${JSON.stringify(result)}; refreshes: ${refreshStatuses.length}`)

  t.same(Object.keys(result.statuses).sort(), ['200', '503'], 'logins answered 200 or 503, nothing else')
  t.ok((result.statuses['503'] ?? 0) > (result.statuses['200'] ?? 0), 'the storm was far beyond the queue: most were shed')
  t.equal(result.shedWithoutRetryAfter, 0, 'every 503 carried Retry-After')
  t.equal(result.errors, 0, 'no connection failed')
  // Counts, not speed: once shedding began, the hashing process was not starved out of the storm.
  t.ok(result.okAfterFirstShed > 0, `logins still succeeded after the first shed (${result.okAfterFirstShed})`)
  t.ok(refreshStatuses.length > 0, 'refresh was asked during the storm')
  t.ok(refreshStatuses.every((s) => s === 200), `every refresh during the storm succeeded (${refreshStatuses.length})`)

  const metrics = await (await fetch(`${base}/metrics`)).text()
  const outcome = (name: string): number => Number(new RegExp(`^tessera_logins_total\\{outcome="${name}"\\} (\\d+)`, 'm').exec(metrics)?.[1])
  t.equal(outcome('shed'), result.statuses['503'], 'every 503 shows in tessera_logins_total{outcome="shed"}')
  t.equal(outcome('ok'), (result.statuses['200'] ?? 0) + 1, 'every 200 shows as ok (and the first login)')
  t.notMatch(server.output(), /"level":50/, 'no error was logged')
})

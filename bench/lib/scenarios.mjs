/**
 * The scenarios, each with the ceiling it is judged against and its target.
 * A scenario whose service is not built yet (notes, the Nginx gateway) says
 * why it did not run; adding it means adding one entry here.
 * @module
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { PASSWORD } from './fixtures.mjs'
import { runLoad } from './load.mjs'
import { longestWaitMs, scrapeQueueWaits } from './queue-wait.mjs'

/**
 * @typedef {import('./load.mjs').LoadResult} LoadResult
 * @typedef {import('./fixtures.mjs').Fixtures} Fixtures
 */

/**
 * @typedef {object} Settings
 * @property {number} duration seconds measured per load run
 * @property {number} loginDuration seconds measured for login
 * @property {number} warmup seconds of unmeasured warm-up per load run
 * @property {number} loginWarmup seconds of unmeasured warm-up before the first login round: a login is slow, so seconds of it warm far fewer requests than the same seconds of refresh
 * @property {number} ceilingSeconds seconds per in-process ceiling (signing, argon2, rotation)
 * @property {number} connections autocannon connections for the fast routes
 * @property {number} loginConnections autocannon connections for login (below the hashing queue's depth)
 * @property {number} rounds rounds per scenario, each after a round of its ceiling
 * @property {number} users
 * @property {number} keyBits
 * @property {number} cores
 */

/**
 * @typedef {object} Context
 * @property {Settings} settings
 * @property {Fixtures} fixtures
 * @property {string} root repository root
 * @property {(name: string) => Promise<number>} ceiling a ceiling by name, measured once per run
 * @property {(name: string) => Promise<number>} ceilingSoFar the best of a ceiling's rounds measured so far (measuring its first if none is)
 * @property {{ body: string, etag: string }} jwks what Tessera serves
 * @property {() => Promise<{ token: string, userId: string, sessionId: string }[]>} accessTokens one live session per user, made once per run (the bare /me ceiling reads the same rows)
 * @property {Record<string, number>} observed req/s each scenario reached on one process, once it has run
 * @property {() => Promise<string>} notes the URL of a notes process on the same database, started once (with one note per user)
 * @property {() => Promise<string>} gateway the URL of the Nginx gateway in front of them, started once
 * @property {() => Record<string, number[]>} [cpuTrees] the process trees whose CPU each measured round reports: Tessera's instances, its Postgres
 */

/**
 * What a scenario must reach, every bound given at once (and zero errors
 * always): a fraction of its ceiling, a rate, a p99 (of the 2xx answers).
 * @typedef {object} Target
 * @property {number} [ratio] the fraction of the ceiling to reach
 * @property {number} [rps] req/s to reach, whatever the ceiling
 * @property {number} [p99Ms] the p99 not to exceed
 * @property {number} [queueWaitMs] the longest wait in the instance's hashing queue not to exceed, over every round (the bucket it falls in)
 * @property {number} [shedP99Ms] "shed at once": the p99 of the 503 answers not to exceed, in every round
 * @property {'issue 12' | 'issue 14' | 'for reading'} source where the target comes from; `for reading` judges a scenario no issue sets a target for like the one it resembles
 */

/**
 * @typedef {object} Scenario
 * @property {string} name
 * @property {string} what
 * @property {string} ceiling the name of the ceiling it is judged against (or, with an absolute target, shown beside)
 * @property {Target} target
 * @property {number} [issue9Ratio] issue 9's fraction of the ceiling, reported for reading where it still says something
 * @property {boolean} scales whether it is also run on several processes
 * @property {string} [note] printed under the table
 * @property {(root: string) => string | undefined} [unavailable] why it cannot run here, if it cannot
 * @property {(ctx: Context, urls: string[], round: number, beforeMeasured?: () => Promise<void>) => Promise<LoadResult>} run one round (0, 1, …): only the first warms up; `beforeMeasured` runs between the warm-up and the measured run (its ceiling's round, so the two are next to each other in time)
 */

/** @param {string} root */
function gatewayMissing (root) {
  if (!existsSync(path.join(root, 'nginx/templates'))) return 'nginx/ (the gateway) is not built yet'
  if (!['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'].some((f) => existsSync(f))) return 'nginx is not installed on this machine (apt-get install nginx)'
  return undefined
}

const pick = (/** @type {any[]} */ list) => list[Math.floor(Math.random() * list.length)]

/**
 * The first round warms the server up; the later ones find it warm. Each
 * round reports the CPU of the processes it measures.
 * @param {Context} ctx @param {string[]} urls @param {number} round @param {() => Promise<void>} [beforeMeasured]
 */
export const base = (ctx, urls, round, beforeMeasured) => ({
  url: urls.length === 1 ? /** @type {string} */ (urls[0]) : urls,
  duration: ctx.settings.duration,
  warmup: round === 0 ? ctx.settings.warmup : 0,
  ...(beforeMeasured === undefined ? {} : { beforeMeasured }),
  ...(ctx.cpuTrees === undefined ? {} : { cpu: ctx.cpuTrees })
})

/**
 * GETs of `route`, each with a random one of the live access tokens as Bearer.
 * @param {Context} ctx @param {string[]} urls @param {number} round @param {(() => Promise<void>) | undefined} beforeMeasured @param {string} route
 */
async function bearerLoad (ctx, urls, round, beforeMeasured, route) {
  const tokens = await ctx.accessTokens()
  return await runLoad({
    ...base(ctx, urls, round, beforeMeasured),
    connections: ctx.settings.connections,
    path: route,
    setupRequest: (request) => ({ ...request, headers: { ...request.headers, authorization: `Bearer ${pick(tokens).token}` } })
  })
}

/** Refresh requests, each presenting a different unused token. @param {Context} ctx @param {string[]} urls @param {number} round @param {() => Promise<void>} [beforeMeasured] */
async function refreshLoad (ctx, urls, round, beforeMeasured) {
  const s = ctx.settings
  // Headroom over the combined ceiling (its best round so far), or over what one process did times the processes; the run stops early rather than reuse a token.
  // The first round sizes its tokens by what signing alone allows, a bound no refresh outruns: asking the combined
  // ceiling now would measure its first round before the warm-up, not next to the measured run as every other round is.
  const bound = round === 0 ? await ctx.ceilingSoFar('refresh-signing-limit') : await ctx.ceilingSoFar('refresh-combined')
  const perSecond = Math.ceil(Math.max(bound * 1.3, (ctx.observed.refresh ?? 0) * 1.5 * urls.length, 100))
  const warmupAmount = round === 0 ? Math.ceil(perSecond * s.warmup) : 0
  const amount = Math.ceil(perSecond * s.duration)
  // autocannon builds each connection's next request ahead, so a few tokens go unsent.
  const tokens = await ctx.fixtures.refreshTokens(warmupAmount + amount + 4 * s.connections)
  let next = 0
  return await runLoad({
    ...base(ctx, urls, round, beforeMeasured),
    connections: s.connections,
    amount,
    warmupAmount,
    method: 'POST',
    path: '/oauth/token',
    headers: { 'content-type': 'application/json' },
    setupRequest: (request) => ({ ...request, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: tokens[next++] ?? 'exhausted' }) })
  })
}

/**
 * Password logins of random pre-created users, `connections` at once. With
 * `shed`, the instances' hashing-queue histograms are scraped around the run
 * for the longest wait in their queues.
 * @param {Context} ctx @param {string[]} urls @param {number} round @param {(() => Promise<void>) | undefined} beforeMeasured @param {number} connections @param {boolean} shed
 */
async function loginLoad (ctx, urls, round, beforeMeasured, connections, shed) {
  if (!shed) return await loginRun(ctx, urls, round, beforeMeasured, connections, shed)
  const before = await Promise.all(urls.map(scrapeQueueWaits))
  const result = await loginRun(ctx, urls, round, beforeMeasured, connections, shed)
  const after = await Promise.all(urls.map(scrapeQueueWaits))
  return { ...result, queueWaitMs: Math.max(...after.map((buckets, i) => longestWaitMs(before[i] ?? new Map(), buckets))) }
}

/** @param {Context} ctx @param {string[]} urls @param {number} round @param {(() => Promise<void>) | undefined} beforeMeasured @param {number} connections @param {boolean} shed */
async function loginRun (ctx, urls, round, beforeMeasured, connections, shed) {
  const users = ctx.fixtures.users
  return await runLoad({
    ...base(ctx, urls, round, beforeMeasured),
    duration: ctx.settings.loginDuration,
    // The storm at 64 connections follows the login scenario on the same
    // instance, whose logins are warm by then; its 503s are not (16
    // connections never shed), so it warms up as a fast scenario does.
    warmup: round !== 0 ? 0 : shed ? ctx.settings.warmup : ctx.settings.loginWarmup,
    connections,
    method: 'POST',
    path: '/oauth/token',
    headers: { 'content-type': 'application/json' },
    shed,
    setupRequest: (request) => ({ ...request, body: JSON.stringify({ grant_type: 'password', username: pick(users).username, password: PASSWORD }) })
  })
}

/**
 * What both login scenarios share: the argon2 ceiling, and the load at the
 * connections of one setting; `shed` when 503s are expected.
 * @param {'loginConnections' | 'connections'} connections @param {boolean} shed
 */
function loginScenario (connections, shed) {
  return {
    ceiling: 'argon2',
    scales: false,
    run: async (/** @type {Context} */ ctx, /** @type {string[]} */ urls, /** @type {number} */ round, /** @type {(() => Promise<void>) | undefined} */ beforeMeasured) => await loginLoad(ctx, urls, round, beforeMeasured, ctx.settings[connections], shed)
  }
}

/** @type {Scenario[]} */
export const SCENARIOS = [
  {
    ...loginScenario('loginConnections', false),
    name: 'login',
    what: 'POST /oauth/token grant_type=password, a random user of the pre-created ones',
    target: { ratio: 0.90, source: 'issue 12' },
    issue9Ratio: 0.85
  },
  {
    ...loginScenario('connections', true),
    name: 'login-c64',
    what: "the login scenario at 64 connections, past what the hashing queue holds: p50 and p99 are of the answered (2xx) logins, which add the hash itself to the wait; the wait in the queue is the instance's own histogram; every other answer must be 503 with Retry-After",
    // Some logins must be answered: a bound on the waits of none would pass any bound.
    target: { rps: 1, queueWaitMs: 500, shedP99Ms: 100, source: 'issue 12' }
  },
  {
    name: 'refresh',
    what: 'POST /oauth/token grant_type=refresh_token, each request a different unused token of its own session',
    ceiling: 'refresh-combined',
    target: { rps: 1500, p99Ms: 100, source: 'issue 12' },
    issue9Ratio: 0.70,
    scales: true,
    run: async (ctx, urls, round, beforeMeasured) => await refreshLoad(ctx, urls, round, beforeMeasured)
  },
  {
    name: 'jwks',
    what: 'GET /.well-known/jwks.json (200 with the body)',
    ceiling: 'bare-jwks',
    target: { ratio: 0.80, source: 'issue 12' },
    scales: true,
    run: async (ctx, urls, round, beforeMeasured) => await runLoad({ ...base(ctx, urls, round, beforeMeasured), connections: ctx.settings.connections, path: '/.well-known/jwks.json' })
  },
  {
    name: 'jwks-304',
    what: 'GET /.well-known/jwks.json with If-None-Match (304, no body)',
    ceiling: 'bare-jwks-304',
    target: { ratio: 0.80, source: 'issue 12' },
    scales: false,
    run: async (ctx, urls, round, beforeMeasured) => await runLoad({
      ...base(ctx, urls, round, beforeMeasured), connections: ctx.settings.connections, path: '/.well-known/jwks.json', headers: { 'if-none-match': ctx.jwks.etag }
    }, [304])
  },
  {
    name: 'me',
    what: 'GET /v1/me with a valid access token (a random one of one per user)',
    ceiling: 'bare-me',
    target: { ratio: 0.60, source: 'issue 12' },
    scales: true,
    run: async (ctx, urls, round, beforeMeasured) => await bearerLoad(ctx, urls, round, beforeMeasured, '/v1/me')
  },
  {
    name: 'notes',
    what: "GET /notes on the sibling service (one note per user), the access token verified offline against Tessera's JWKS",
    ceiling: 'bare-me-one-process',
    target: { ratio: 0.60, source: 'for reading' },
    note: 'No issue sets a target for notes; it is judged like /v1/me (a verified token, then a small read), against the bare route in one process, as notes runs.',
    scales: false,
    unavailable: (root) => existsSync(path.join(root, 'services/notes/dist/server.js')) ? undefined : 'services/notes is not built (run make build)',
    run: async (ctx, _urls, round, beforeMeasured) => await bearerLoad(ctx, [await ctx.notes()], round, beforeMeasured, '/notes')
  },
  {
    name: 'gateway-jwks',
    what: "GET /.well-known/jwks.json through the Nginx gateway over TLS (the gateway's cache answers)",
    ceiling: 'bare-jwks-one-process',
    target: { ratio: 0.80, source: 'for reading' },
    scales: false,
    note: "No issue sets a target through the gateway; judged like the JWKS against the bare route in one process, as the gateway's one Nginx worker answers (plain HTTP, so TLS is on the gateway side only).",
    unavailable: gatewayMissing,
    run: async (ctx, _urls, round, beforeMeasured) => await runLoad({ ...base(ctx, [await ctx.gateway()], round, beforeMeasured), connections: ctx.settings.connections, path: '/.well-known/jwks.json' })
  },
  {
    name: 'gateway-refresh',
    what: 'the refresh scenario through the Nginx gateway over TLS, to one Tessera process',
    ceiling: 'refresh-combined',
    target: { ratio: 0.70, source: 'for reading' },
    scales: false,
    note: "No issue sets a target through the gateway; judged like refresh against issue 9's share of the combined ceiling.",
    unavailable: gatewayMissing,
    run: async (ctx, _urls, round, beforeMeasured) => await refreshLoad(ctx, [await ctx.gateway()], round, beforeMeasured)
  }
]

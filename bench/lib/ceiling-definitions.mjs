/**
 * Every ceiling `make bench` can judge a scenario against or print beside it,
 * by name: what each measures, and how (the measurements themselves are in
 * ceilings.mjs, client-credentials.mjs and physical.mjs). A combined ceiling
 * names the ceilings it is built from; ceiling-registry.mjs measures each
 * once per run.
 * @module
 */
import { argon2Rate, combinedLoginCeiling, combinedRefreshCeiling, loginGrantRate, pgbenchRotationRate, rotationRate, signJoseRate, signNodeRate, verifyJoseRate, verifyNodeRate } from './ceilings.mjs'
import { clientCredentialsCeilings } from './client-credentials.mjs'
import { physicalCeilings } from './physical.mjs'
import { workerPoolSize } from './service.mjs'

/**
 * @typedef {import('./ceiling-registry.mjs').CeilingDefinition} CeilingDefinition
 * @typedef {Omit<import('./load.mjs').LoadOptions, 'url' | 'duration' | 'warmup' | 'connections'>} BareRequest
 */

/** The suffix of the bare routes served by one process, read beside the ones served as Tessera serves them. */
export const ONE_PROCESS = '-one-process'

/** The suffix of the bare JWKS answered by node:http before Fastify routes it, as Tessera answers its own. */
export const BEFORE_ROUTING = '-node'

/**
 * Ceilings read beside a scenario's own whose rounds alternate with its
 * rounds as its own ceiling's do: the bare route in one process beside the
 * one laid out as Tessera (docs/decisions.md, "The bare route served as
 * Tessera serves it"); for the JWKS, also the same answers by node:http,
 * which is how Tessera answers them (decisions.md, "The JWKS before routing").
 */
export const ALTERNATING_BESIDE = {
  jwks: [`bare-jwks${ONE_PROCESS}`, `bare-jwks${BEFORE_ROUTING}`],
  'jwks-304': [`bare-jwks-304${ONE_PROCESS}`, `bare-jwks-304${BEFORE_ROUTING}`],
  me: [`bare-me${ONE_PROCESS}`]
}

/** Connections Tessera's whole instance holds to Postgres (cluster/pool.ts: one worker gets all of them). */
export const INSTANCE_POOL = workerPoolSize(1)

/** The calls a worker's RefreshDecisions keeps in flight (grants/refresh-decisions.ts). */
const ROTATION_LANES = 2

/** @param {{ workers: number, connections: number }} run */
const rotationLayout = (run) => ({ workers: run.workers, pool: workerPoolSize(run.workers), chains: run.connections })

/** The decisions in one of pgbench's calls: the scenario's connections shared by the calls the instance keeps in flight. @param {{ workers: number, connections: number }} run */
const pgbenchTogether = (run) => Math.max(1, Math.ceil(run.connections / (ROTATION_LANES * run.workers)))

/**
 * @param {object} run
 * @param {string} run.databaseUrl
 * @param {number} run.keyBits
 * @param {number} run.cores
 * @param {number} run.seconds per in-process round
 * @param {number} run.connections the scenarios' connections (in flight for the in-process ceilings)
 * @param {{ body: string, etag: string }} run.jwks what Tessera serves
 * @param {string} run.tokenResponse a real token response, for its size
 * @param {string} run.refreshToken a used refresh token, for a refresh-sized body
 * @param {number} run.workers the HTTP workers of the Tessera instance the scenarios run on (its default: one per core)
 * @param {(request: BareRequest, ok: number[], round: number, workers: number) => Promise<number | import('./ceiling-registry.mjs').MeasuredRound>} run.bareLoad req/s of the bare server laid out as `workers` processes (1: one process) under the scenarios' load (`ok`: statuses that count as success besides 2xx), with the cores each part of the machine used meanwhile
 * @param {() => Promise<{ userId: string, sessionId: string }[]>} run.sessions the live sessions the me scenario reads
 * @param {{ env: Record<string, string>, kek: Buffer, usernames: () => string[], inFlight: number }} run.login the instance's settings and KEK, the users the login scenario logs in, its connections
 * @param {(line: string) => void} run.log
 * @returns {Record<string, CeilingDefinition>}
 */
export function ceilingDefinitions (run) {
  const { keyBits, cores, seconds } = run
  return {
    'sign-jose': {
      what: `jose SignJWT RS256 (${keyBits}-bit), 64 in flight (WebCrypto on libuv's pool, every core)`,
      measure: async (_round, window) => await signJoseRate(keyBits, seconds, window)
    },
    'sign-node': {
      what: `node:crypto.sign RS256 (${keyBits}-bit) with a KeyObject, synchronously on one thread, as Tessera signs (tokens/jws.ts)`,
      measure: async (_round, window) => await signNodeRate(keyBits, seconds, window)
    },
    argon2: {
      what: `argon2id verify at Tessera's parameters (19 MiB, t=2, p=1), ${cores} at once (Tessera's hashing concurrency = cores)`,
      measure: async (_round, window) => await argon2Rate(cores, seconds, window)
    },
    'login-grant': {
      what: `the password grant beside its hash, as a worker runs it: grants/password.ts's passwordGrant (the client from the worker's memory, attempt counted with the user read, tessera_start_login, two RS256 signatures) through Tessera's connection, keyring and settings, ${run.login.inFlight} at once, the verify answered at once: for reading`,
      measure: async (_round, window) => await loginGrantRate({ env: run.login.env, kek: run.login.kek, usernames: run.login.usernames(), inFlight: run.login.inFlight, pool: INSTANCE_POOL, seconds, window })
    },
    'login-combined': {
      what: 'one login = 1 argon2 verify (argon2) + the grant beside it (login-grant) + 1 request (bare-token), one after another: 1/(1/argon2 + 1/grant + 1/request); what the machine allows a login with all of its work, for reading beside the target\'s argon2 alone',
      from: ['argon2', 'login-grant', 'bare-token'],
      combine: (hashes, grants, requests) => combinedLoginCeiling({ hashes, grants, requests })
    },
    rotation: {
      what: `refresh decisions as Tessera makes them: grants/refresh-decisions.ts's RefreshDecisions, one per HTTP worker (${run.workers}), each on a pool of its own the size of a worker's (${workerPoolSize(run.workers)}), ${run.connections} chains at once spread over them as the scenario's connections are, each rotating the successor it got last; a worker's decisions that arrive while its two calls are in flight go together in one call of the SQL function tessera_refresh_grants (for each: authenticate the client, lock, check, mark used, insert the successor, slide; one transaction), through Tessera's Kysely connection`,
      measure: async (_round, window) => await rotationRate(run.databaseUrl, rotationLayout(run), seconds, window)
    },
    'rotation-pgbench': {
      what: `the same function from Postgres's own point of view: pgbench, ${ROTATION_LANES * run.workers} clients (the calls Tessera's instance keeps in flight), each rotating ${pgbenchTogether(run)} chains of its own per call of tessera_refresh_grants, prepared once per connection as Tessera sends it; decisions per second (falls back to the rotation ceiling when pgbench is not installed): for reading`,
      measure: async () => {
        const rate = await pgbenchRotationRate(run.databaseUrl, { clients: ROTATION_LANES * run.workers, together: pgbenchTogether(run) }, seconds)
        if (rate !== undefined) return rate
        run.log('pgbench is not installed: rotation-pgbench repeats the rotation ceiling\'s first round')
        return await rotationRate(run.databaseUrl, rotationLayout(run), seconds)
      }
    },
    'verify-jose': {
      what: `jose jwtVerify of a refresh token (${keyBits}-bit), 64 in flight, WebCrypto on libuv's pool: a library verifier beside the one Tessera uses (verify-node), for reading`,
      measure: async (_round, window) => await verifyJoseRate(keyBits, seconds, window)
    },
    'verify-node': {
      what: 'node:crypto.verify of the same signature on one thread, without claim checks: how tokens/verify-refresh.ts verifies (its claim checks aside), for reading',
      measure: async (_round, window) => await verifyNodeRate(keyBits, seconds, window)
    },
    'bare-token': {
      what: `bare Fastify process: POST with a refresh-sized JSON body, answering a token-response-sized body (${run.tokenResponse.length} B), same autocannon settings`,
      measure: async (round) => await run.bareLoad({ method: 'POST', path: '/token', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: run.refreshToken }) }, [], round, 1)
    },
    'refresh-combined': {
      what: 'one refresh = 2 signatures (sign-jose ÷ 2) + 1 rotation transaction + 1 request (bare-token), used one after another: 1/(2/sign + 1/rotation + 1/request)',
      from: ['sign-jose', 'rotation', 'bare-token'],
      combine: (signs, transactions, requests) => combinedRefreshCeiling({ signs, transactions, requests })
    },
    'refresh-combined-node': {
      what: 'the same with sign-node: what one process signing on its event loop allows (for reading; the target uses refresh-combined)',
      from: ['sign-node', 'rotation', 'bare-token'],
      combine: (signs, transactions, requests) => combinedRefreshCeiling({ signs, transactions, requests })
    },
    ...bareRoutes(run, run.workers, ''),
    ...bareRoutes(run, 1, ONE_PROCESS),
    [`bare-jwks${BEFORE_ROUTING}`]: {
      what: 'the bare JWKS laid out as bare-jwks, answered by a node:http listener before Fastify routes it, as Tessera answers its own (for reading)',
      measure: async (round) => await run.bareLoad({ path: '/jwks-node' }, [], round, run.workers)
    },
    [`bare-jwks-304${BEFORE_ROUTING}`]: {
      what: 'the same with If-None-Match: 304, no body (for reading)',
      measure: async (round) => await run.bareLoad({ path: '/jwks-node', headers: { 'if-none-match': run.jwks.etag } }, [304], round, run.workers)
    },
    ...clientCredentialsCeilings({ url: run.databaseUrl, seconds, inFlight: run.connections, pool: INSTANCE_POOL }),
    ...physicalCeilings({ keyBits, cores, seconds })
  }
}

/**
 * The bare routes the JWKS and /v1/me are judged against, served by
 * `workers` processes: a node:cluster of them sharing one port, each with
 * its share of the instance's 20 connections, as Tessera serves (or, for 1,
 * one process with all 20).
 * @param {Parameters<typeof ceilingDefinitions>[0]} run @param {number} workers @param {string} suffix
 * @returns {Record<string, CeilingDefinition>}
 */
function bareRoutes (run, workers, suffix) {
  const layout = suffix === ONE_PROCESS
    ? 'one bare Fastify process (what the JWKS and /v1/me were judged against before session 7)'
    : `bare Fastify served as Tessera serves it: ${workers > 1 ? `a node:cluster of ${workers} workers sharing one port` : 'one worker'} (Tessera's HTTP workers in this run)`
  const pool = workerPoolSize(workers)
  return {
    [`bare-jwks${suffix}`]: {
      what: `${layout}, answering Tessera's JWKS body (${run.jwks.body.length} B) with its headers, same autocannon settings`,
      measure: async (round) => await run.bareLoad({ path: '/jwks' }, [], round, workers)
    },
    [`bare-jwks-304${suffix}`]: {
      what: `${layout}: the same route with If-None-Match: 304, no body`,
      measure: async (round) => await run.bareLoad({ path: '/jwks', headers: { 'if-none-match': run.jwks.etag } }, [304], round, workers)
    },
    [`bare-me${suffix}`]: {
      what: `${layout}, doing /v1/me's one-row read (users JOIN sessions by ids, its named statement, a pool of ${pool}${workers > 1 ? ' per worker' : ''}) for a random one of the same sessions`,
      measure: async (round) => {
        const pairs = await run.sessions()
        return await run.bareLoad({
          path: '/me',
          setupRequest: (request) => {
            const pair = pairs[Math.floor(Math.random() * pairs.length)]
            return { ...request, headers: { ...request.headers, 'x-user-id': pair.userId, 'x-session-id': pair.sessionId } }
          }
        }, [], round, workers)
      }
    }
  }
}

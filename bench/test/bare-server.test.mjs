/**
 * The bare server the JWKS and /v1/me are judged against, laid out as
 * Tessera serves: with BARE_WORKERS=2 a node:cluster of two processes
 * answering on one port, stopped whole; and the ceilings that use it, the
 * cluster ones judged with the one-process ones beside.
 * @module
 */
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ALTERNATING_BESIDE, BEFORE_ROUTING, ONE_PROCESS, ceilingDefinitions } from '../lib/ceiling-definitions.mjs'
import { startBareServer } from '../lib/ceilings.mjs'
import { SCENARIOS } from '../lib/scenarios.mjs'

const JWKS = '{"keys":[{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"}]}'
const ETAG = '"jwks-etag"'
/** Requests per kind (200, 304), one after another: the kernel hands each new connection to either worker, so both answer some (all 24 to one is 1 in 2^23). */
const REQUESTS = 12

/** @param {number} workers */
const bare = async (workers) => await startBareServer({
  // /jwks never touches the database: a pool connects on its first query only.
  databaseUrl: 'postgres://nobody@127.0.0.1:1/none',
  jwks: JWKS,
  etag: ETAG,
  jwksHeaders: { 'cache-control': 'public, max-age=300' },
  requestIdLength: 6,
  tokenResponse: '{}',
  workers
})

/** The pids a process started, from /proc. @param {number} pid @returns {number[]} */
const children = (pid) => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((p) => p !== '').map(Number)

/** @param {number} pid */
const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * GET /jwks on a connection of its own each time, so either worker may take it.
 * @param {string} url @param {Record<string, string>} headers
 * @param {string} [path]
 * @returns {Promise<{ status: number, body: string, etag: string | undefined, requestId: string, headers: Record<string, unknown> }>}
 */
const getJwks = async (url, headers, path = '/jwks') => await new Promise((resolve, reject) => {
  const req = request(`${url}${path}`, { headers, agent: false }, (res) => {
    let body = ''
    res.on('data', (chunk) => { body += chunk })
    res.on('end', () => {
      const { date, connection, 'keep-alive': keepAlive, 'x-request-id': requestId, ...own } = res.headers
      resolve({ status: res.statusCode ?? 0, body, etag: res.headers.etag, requestId: String(requestId), headers: own })
    })
  })
  req.on('error', reject)
  req.end()
})

/**
 * REQUESTS answers of each kind: the body with its ETag, then 304 for that
 * ETag. Each process counts its own request ids from 1, so an id seen twice
 * means two processes answered; one process never repeats one.
 * @param {string} url
 */
async function answersOfEachKind (url) {
  const full = []
  for (let i = 0; i < REQUESTS; i++) full.push(await getJwks(url, {}))
  const notModified = []
  for (let i = 0; i < REQUESTS; i++) notModified.push(await getJwks(url, { 'if-none-match': ETAG }))
  for (const answer of full) assert.deepEqual([answer.status, answer.body, answer.etag], [200, JWKS, ETAG])
  for (const answer of notModified) assert.deepEqual([answer.status, answer.body, answer.etag], [304, '', ETAG])
  const answers = [...full, ...notModified]
  return answers.length - new Set(answers.map((a) => a.requestId)).size
}

test('BARE_WORKERS=2: two processes answer /jwks on one port, 200 and 304, and SIGTERM stops them all', async (t) => {
  const server = await bare(2)
  t.after(async () => { await server.stop() })
  const workers = children(server.pid)
  assert.equal(workers.length, 2, 'the primary forked two workers')

  assert.ok(await answersOfEachKind(server.url) > 0, 'the answers came from two processes (a request id counted twice)')

  assert.equal(await server.stop(), 0, 'a clean exit')
  assert.deepEqual(workers.filter(alive), [], 'no worker outlives the primary')
})

test('by default the bare server is one process: nothing forked, no request id repeated', async (t) => {
  const server = await bare(1)
  t.after(async () => { await server.stop() })
  assert.deepEqual(children(server.pid), [])
  assert.equal(await answersOfEachKind(server.url), 0)
  assert.equal(await server.stop(), 0)
})

test('/jwks-node answers as /jwks does, from node:http before Fastify routes it', async (t) => {
  const server = await bare(1)
  t.after(async () => { await server.stop() })
  for (const headers of [{}, { 'if-none-match': ETAG }, { 'if-none-match': '"other"' }]) {
    const routed = await getJwks(server.url, headers)
    const early = await getJwks(server.url, headers, '/jwks-node')
    assert.deepEqual([early.status, early.body, early.headers], [routed.status, routed.body, routed.headers], JSON.stringify(headers))
    assert.match(early.requestId, /^\d{6}$/, 'a request id of the same length')
  }
})

test('a worker that dies stops the whole bare server, with an error: a ceiling is never measured on fewer processes than it says', async (t) => {
  const server = await bare(2)
  t.after(async () => { await server.stop() })
  const [victim, other] = children(server.pid)
  assert.ok(victim !== undefined && other !== undefined)
  process.kill(victim, 'SIGKILL')
  assert.equal(await server.exited, 1)
  assert.equal(alive(other), false)
})

test('the JWKS and /v1/me are judged against the bare route laid out as Tessera serves it, the one-process route read beside', async () => {
  /** @type {{ path: string | undefined, workers: number }[]} */
  const loads = []
  const definitions = ceilingDefinitions({
    databaseUrl: 'postgres://unused',
    keyBits: 2048,
    cores: 2,
    workers: 3,
    seconds: 1,
    connections: 64,
    jwks: { body: JWKS, etag: ETAG },
    tokenResponse: '{}',
    refreshToken: 'rt',
    sessions: async () => [{ userId: 'u', sessionId: 's' }],
    login: { env: {}, kek: Buffer.alloc(32), usernames: () => [], inFlight: 16 },
    log: () => {},
    bareLoad: async (request, _ok, _round, workers) => {
      loads.push({ path: request.path, workers })
      return 1
    }
  })
  const judged = Object.fromEntries(SCENARIOS.map((s) => [s.name, s.ceiling]))
  assert.deepEqual([judged.jwks, judged['jwks-304'], judged.me], ['bare-jwks', 'bare-jwks-304', 'bare-me'])
  for (const [scenario, ceilings] of Object.entries(ALTERNATING_BESIDE)) {
    assert.deepEqual(ceilings[0], `${judged[scenario]}${ONE_PROCESS}`, `${scenario} reads the one-process route beside its own`)
  }
  assert.deepEqual([ALTERNATING_BESIDE.jwks[1], ALTERNATING_BESIDE['jwks-304'][1]], [`bare-jwks${BEFORE_ROUTING}`, `bare-jwks-304${BEFORE_ROUTING}`], 'and the JWKS the route answered by node:http')
  for (const name of ['bare-jwks', 'bare-jwks-304', 'bare-me', 'bare-jwks-one-process', 'bare-jwks-304-one-process', 'bare-me-one-process', 'bare-jwks-node', 'bare-jwks-304-node']) {
    const found = definitions[name]
    assert.ok(found !== undefined && 'measure' in found, name)
    await found.measure(0)
  }
  assert.deepEqual(loads, [
    { path: '/jwks', workers: 3 }, { path: '/jwks', workers: 3 }, { path: '/me', workers: 3 },
    { path: '/jwks', workers: 1 }, { path: '/jwks', workers: 1 }, { path: '/me', workers: 1 },
    { path: '/jwks-node', workers: 3 }, { path: '/jwks-node', workers: 3 }
  ], "the judged ones on the instance's workers, the one-process ones on one process, the node:http ones laid out as the judged")
  assert.match(definitions['bare-jwks']?.what ?? '', /served as Tessera serves it: a node:cluster of 3 workers sharing one port/)
  assert.match(definitions['bare-me']?.what ?? '', /a pool of 7 per worker/, "each worker's share of the instance's 20 connections")
  assert.match(definitions['bare-me-one-process']?.what ?? '', /^one bare Fastify process.*a pool of 20\)/)
  // The sibling service and the gateway each answer from one process (notes; Nginx's one worker).
  assert.deepEqual([judged.notes, judged['gateway-jwks']], ['bare-me-one-process', 'bare-jwks-one-process'])
})

#!/usr/bin/env node
/**
 * The ceilings' server: a bare Fastify (default options, no plugins) in its
 * own process, as Tessera runs in its own; with BARE_WORKERS=N (N > 1) a
 * node:cluster of N such processes sharing one port as Tessera's HTTP
 * workers share theirs (services/auth/src/cluster/port.ts: each listens itself
 * with SO_REUSEPORT on Linux). Routes:
 *   GET  /jwks   the JWKS body Tessera serves, with its ETag (304 on If-None-Match) and the same
 *                headers (BARE_JWKS_HEADERS, and an x-request-id of BARE_REQUEST_ID_LENGTH characters,
 *                counted per process)
 *   GET  /jwks-node  the same answers from a node:http listener in front of Fastify's routing, as
 *                Tessera answers its JWKS (services/auth/src/http/answer-before-routing.ts)
 *   GET  /me     the same one-row Postgres read as /v1/me (its very SQL text, a named statement as Tessera sends it), ids from x-user-id/x-session-id,
 *                on a pool of BARE_POOL connections per process (default 20)
 *   POST /token  a JSON body in, a token-response-sized JSON body out
 * Configured by BARE_WORKERS, BARE_JWKS, BARE_ETAG, BARE_JWKS_HEADERS, BARE_REQUEST_ID_LENGTH, BARE_TOKEN_RESPONSE,
 * BARE_DATABASE_URL, BARE_POOL; prints {"port":N} once every process listens on 127.0.0.1. SIGTERM or SIGINT
 * stops them all.
 * @module
 */
import cluster from 'node:cluster'
import Fastify from 'fastify'
import pg from 'pg'
import { sharedPortFor } from '@tessera/auth/cluster/port.js'
import { LIVE_PROFILE_SQL as ME, LIVE_PROFILE_STATEMENT, postgresClientConfig } from './lib/service.mjs'

const workers = Number(process.env.BARE_WORKERS ?? 1)

/** One process answering the routes; resolves to the port it listens on. */
async function serve () {
  const jwks = process.env.BARE_JWKS ?? '{"keys":[]}'
  const etag = process.env.BARE_ETAG ?? '"none"'
  const jwksHeaders = JSON.parse(process.env.BARE_JWKS_HEADERS ?? '{"cache-control":"public, max-age=300"}')
  const requestIdLength = Number(process.env.BARE_REQUEST_ID_LENGTH ?? 0)
  let requests = 0
  const tokenResponse = process.env.BARE_TOKEN_RESPONSE ?? '{}'
  const pool = new pg.Pool({ ...postgresClientConfig(process.env.BARE_DATABASE_URL ?? ''), max: Number(process.env.BARE_POOL ?? 20) })

  const app = Fastify({ logger: false })
  app.get('/jwks', async (request, reply) => {
    void reply.headers(jwksHeaders).header('etag', etag)
    if (requestIdLength > 0) void reply.header('x-request-id', String(++requests).padStart(requestIdLength, '0'))
    if (request.headers['if-none-match'] === etag) return await reply.code(304).send()
    return await reply.type('application/jwk-set+json').send(jwks)
  })
  // Tessera's JWKS is answered before Fastify routes it: the same, bare.
  const jwksLines = [...Object.entries(jwksHeaders).flat(), 'etag', etag]
  const okLines = [...jwksLines, 'content-type', 'application/jwk-set+json; charset=utf-8', 'content-length', String(Buffer.byteLength(jwks))]
  const routing = app.routing
  app.server.removeListener('request', routing)
  app.server.on('request', (req, res) => {
    if (req.url !== '/jwks-node' || req.method !== 'GET') {
      routing(req, res)
      return
    }
    const notModified = req.headers['if-none-match'] === etag
    const lines = notModified ? [...jwksLines] : [...okLines]
    if (requestIdLength > 0) lines.push('x-request-id', String(++requests).padStart(requestIdLength, '0'))
    res.writeHead(notModified ? 304 : 200, lines)
    res.end(notModified ? undefined : jwks)
  })
  app.get('/me', async (request, reply) => {
    const { rows } = await pool.query({ name: LIVE_PROFILE_STATEMENT, text: ME, values: [request.headers['x-user-id'], request.headers['x-session-id'], new Date()] })
    if (rows.length === 0) return await reply.code(401).send({ error: 'no such session' })
    return { id: rows[0].id, username: rows[0].username, created_at: rows[0].created_at.toISOString(), session_id: request.headers['x-session-id'], scope: 'read write', client_id: 'tessera' }
  })
  app.post('/token', async (request, reply) => {
    if (typeof request.body !== 'object' || request.body === null) return await reply.code(400).send()
    return await reply.type('application/json').header('cache-control', 'no-store').send(tokenResponse)
  })
  /** @type {Promise<void> | undefined} */
  let stopping
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => { stopping ??= app.close().then(async () => { await pool.end() }).then(() => process.exit(0)) })
  }
  // In a cluster worker, the port and the way of sharing it the primary chose for every worker.
  const shared = cluster.isPrimary ? { port: 0, reusePort: false } : JSON.parse(process.env.BARE_SHARED_PORT ?? '')
  await app.listen({ port: shared.port, host: '127.0.0.1', reusePort: shared.reusePort })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  process.send?.({ listening: port })
  return port
}

/**
 * Forks `count` processes running serve() and resolves to their port once
 * all listen; stops them all on a signal, or when one dies (a ceiling
 * measured on fewer processes than it says would flatter Tessera).
 * @param {number} count @returns {Promise<number>}
 */
async function servePrimary (count) {
  let stopping = false
  const stop = (/** @type {number} */ code) => {
    stopping = true
    const alive = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined && !w.isDead())
    if (alive.length === 0) process.exit(code)
    let left = alive.length
    for (const worker of alive) {
      worker.once('exit', () => { if (--left === 0) process.exit(code) })
      worker.process.kill('SIGTERM')
    }
  }
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => { if (!stopping) stop(0) })
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return
    process.stderr.write(`bare server: worker ${worker.process.pid} exited (${signal ?? code}); stopping the others\n`)
    stop(1)
  })
  const shared = await sharedPortFor('127.0.0.1', 0)
  return await new Promise((resolve) => {
    let listening = 0
    // Told by each worker: with SO_REUSEPORT it listens without the primary, so node:cluster's 'listening' never comes.
    cluster.on('message', (_worker, message) => { if (typeof message?.listening === 'number' && ++listening === count) resolve(message.listening) })
    for (let i = 0; i < count; i++) cluster.fork({ BARE_SHARED_PORT: JSON.stringify(shared) })
  })
}

if (workers > 1 && cluster.isPrimary) {
  process.stdout.write(`${JSON.stringify({ port: await servePrimary(workers) })}\n`)
} else {
  const port = await serve()
  if (cluster.isPrimary) process.stdout.write(`${JSON.stringify({ port })}\n`)
}

#!/usr/bin/env node
/**
 * The ceilings' server: a bare Fastify (default options, no plugins) in its
 * own process, as Tessera runs in its own. Routes:
 *   GET  /jwks   the JWKS body Tessera serves, with its ETag (304 on If-None-Match)
 *   GET  /me     the same one-row Postgres read as /v1/me (its very SQL text), ids from x-user-id/x-session-id
 *   POST /token  a JSON body in, a token-response-sized JSON body out
 * Configured by BARE_JWKS, BARE_ETAG, BARE_TOKEN_RESPONSE, BARE_DATABASE_URL; prints
 * {"port":N} once listening on 127.0.0.1.
 * @module
 */
import Fastify from 'fastify'
import pg from 'pg'
import { LIVE_PROFILE_SQL as ME } from './lib/service.mjs'

const jwks = process.env.BARE_JWKS ?? '{"keys":[]}'
const etag = process.env.BARE_ETAG ?? '"none"'
const tokenResponse = process.env.BARE_TOKEN_RESPONSE ?? '{}'
const pool = new pg.Pool({ connectionString: process.env.BARE_DATABASE_URL, max: 20 })

const app = Fastify({ logger: false })
app.get('/jwks', async (request, reply) => {
  void reply.header('cache-control', 'public, max-age=300').header('etag', etag)
  if (request.headers['if-none-match'] === etag) return await reply.code(304).send()
  return await reply.type('application/jwk-set+json').send(jwks)
})
app.get('/me', async (request, reply) => {
  const { rows } = await pool.query(ME, [request.headers['x-user-id'], request.headers['x-session-id'], new Date()])
  if (rows.length === 0) return await reply.code(401).send({ error: 'no such session' })
  return { id: rows[0].id, username: rows[0].username, created_at: rows[0].created_at.toISOString(), session_id: request.headers['x-session-id'], scope: 'read write', client_id: 'tessera' }
})
app.post('/token', async (request, reply) => {
  if (typeof request.body !== 'object' || request.body === null) return await reply.code(400).send()
  return await reply.type('application/json').header('cache-control', 'no-store').send(tokenResponse)
})
await app.listen({ port: 0, host: '127.0.0.1' })
const address = app.server.address()
process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`)
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => { void app.close().then(() => pool.end()).then(() => process.exit(0)) })
}

/**
 * A request whose body trickles in is cut off at the answer timeout, as one
 * whose headers trickle in is: Fastify sets requestTimeout on the server it
 * made, where Node then bounds only the headers (app.ts). Through the gateway
 * Nginx's client_body_timeout bounds it too; this is the instance reached
 * directly. Slow by nature: Node checks its connections every 30 s.
 */
import t from 'tap'
import type { AddressInfo } from 'node:net'
import { trickleRequest } from '@tessera/testkit'
import { ANSWER_TIMEOUT_MS } from '../../src/config.js'
import { buildTestApp } from '../helpers/app.js'

/** Node's connectionsCheckingInterval, the most a timed-out request waits to be noticed. */
const CHECK_INTERVAL_MS = 30_000

t.test('a body sent a byte every two seconds is answered 408 within the timeout and one check, not held while bytes keep coming', async (t) => {
  const { app } = await buildTestApp(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const slow = await trickleRequest(port, 'POST /v1/users HTTP/1.1\r\nHost: tessera.test\r\nContent-Type: application/json\r\nContent-Length: 16000\r\n\r\n{',
    { everyMs: 2000, deadlineMs: ANSWER_TIMEOUT_MS + CHECK_INTERVAL_MS + 10_000 })
  t.ok(slow.closed, `cut off after ${slow.elapsedMs} ms`)
  t.match(slow.answer, /^HTTP\/1\.1 408 /, 'refused as too slow')
})

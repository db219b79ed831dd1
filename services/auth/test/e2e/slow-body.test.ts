/**
 * A request whose body trickles in is cut off at the answer timeout, as one
 * whose headers trickle in is: Fastify sets requestTimeout on the server it
 * made, where Node then bounds only the headers (app.ts). Through the gateway
 * Nginx's client_body_timeout bounds it too; this is the instance reached
 * directly. Slow by nature: Node checks its connections every 30 s.
 */
import t from 'tap'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { ANSWER_TIMEOUT_MS } from '../../src/config.js'
import { buildTestApp } from '../helpers/app.js'

/** Node's connectionsCheckingInterval, the most a timed-out request waits to be noticed. */
const CHECK_INTERVAL_MS = 30_000

t.test('a body sent a byte every two seconds is answered 408 within the timeout and one check, not held while bytes keep coming', async (t) => {
  const { app } = await buildTestApp(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  const started = Date.now()
  socket.write('POST /v1/users HTTP/1.1\r\nHost: tessera.test\r\nContent-Type: application/json\r\nContent-Length: 16000\r\n\r\n{')
  const trickle = setInterval(() => { if (!socket.destroyed) socket.write(' ') }, 2000)
  const deadline = ANSWER_TIMEOUT_MS + CHECK_INTERVAL_MS + 10_000
  const answer = await new Promise<string>((resolve) => {
    let text = ''
    socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
    socket.on('close', () => { resolve(text) })
    socket.on('error', () => {})
    setTimeout(() => { resolve(`still open after ${deadline} ms: ${text}`) }, deadline)
  })
  clearInterval(trickle)
  t.match(answer, /^HTTP\/1\.1 408 /, 'refused as too slow')
  t.ok(Date.now() - started < deadline, `cut off after ${Date.now() - started} ms`)
})

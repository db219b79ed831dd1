/**
 * A JWKS URL that answers far more than a key set (the URL is the
 * operator's: a wrong one, a file server, a stream): a failed fetch, a 503,
 * read no further than JWKS_MAX_BYTES, not a body held whole in memory.
 */
import { generateKeyPairSync } from 'node:crypto'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createKeySource, JWKS_MAX_BYTES, JwksUnavailableError } from '../../src/keys.js'

const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
// A key set notes would accept, padded past the bound with JSON whitespace.
const jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS256', use: 'sig' }] })
const padded = Buffer.from(`${jwks.slice(0, -1)}${' '.repeat(JWKS_MAX_BYTES)}}`)

/** Bytes the server got written out, per answer, and whether the client hung up before the end. */
const answers: Array<{ sent: number, cut: boolean }> = []
function endless (res: ServerResponse, answer: { sent: number, cut: boolean }): void {
  const chunk = Buffer.alloc(64 * 1024, 0x20)
  res.write('{"keys":[')
  const pump = (): void => {
    while (!res.destroyed) {
      answer.sent += chunk.length
      if (!res.write(chunk)) { res.once('drain', pump); return }
    }
  }
  pump()
}
const server = createServer((req, res) => {
  const answer = { sent: 0, cut: false }
  answers.push(answer)
  res.on('close', () => { answer.cut = !res.writableFinished })
  if (req.url === '/declared') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': padded.length })
    res.end(padded)
    return
  }
  res.writeHead(200, { 'content-type': 'application/json' })
  endless(res, answer)
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
t.teardown(() => { server.closeAllConnections(); server.close() })
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

t.test('a JWKS answer longer than JWKS_MAX_BYTES is a failed fetch (503), whether its length is declared or not', async (t) => {
  const declared = createKeySource(`${base}/declared`, { cacheMaxAgeMs: 60_000, cooldownMs: 30_000, clockSkewMs: 0 })
  const refused = await declared('k1', 'RS256').catch((err: unknown) => err)
  t.ok(refused instanceof JwksUnavailableError, 'not verified with a key read from past the bound')
  t.equal(((refused as Error).cause as Error | undefined)?.message, `the JWKS response is ${padded.length} bytes, more than the ${JWKS_MAX_BYTES} notes reads`)

  const streamed = createKeySource(`${base}/endless`, { cacheMaxAgeMs: 60_000, cooldownMs: 30_000, clockSkewMs: 0 })
  const started = Date.now()
  const cut = await streamed('k1', 'RS256').catch((err: unknown) => err)
  const elapsed = Date.now() - started
  t.ok(cut instanceof JwksUnavailableError)
  t.equal(((cut as Error).cause as Error | undefined)?.message, `the JWKS response is more than the ${JWKS_MAX_BYTES} bytes notes reads`)
  // Waiting for jose's 5 s timeout gives up no sooner than that; how much sooner the bound does is the machine's speed.
  t.ok(elapsed < 5000, `given up after ${elapsed} ms at the bound, not at jose's 5 s timeout`)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(answers.length, 2)
  t.ok(answers[1]?.cut, 'the endless answer\'s connection was closed')
  t.ok((answers[1]?.sent ?? 0) < 16 * JWKS_MAX_BYTES, `the server wrote ${answers[1]?.sent ?? 0} bytes before it was cut off`)
})

t.test('a key set within the bound still verifies', async (t) => {
  const small = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end(jwks) })
  await new Promise<void>((resolve) => small.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { small.closeAllConnections(); small.close() })
  const keys = createKeySource(`http://127.0.0.1:${(small.address() as AddressInfo).port}/jwks`, { cacheMaxAgeMs: 60_000, cooldownMs: 30_000, clockSkewMs: 0 })
  t.match(await keys('k1', 'RS256'), /^-----BEGIN PUBLIC KEY-----\n/)
})

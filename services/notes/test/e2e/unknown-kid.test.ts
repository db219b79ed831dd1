/**
 * A token whose kid the issuer's key set lacks, with its `iat` (read
 * unverified) deciding 401 or 503 (src/keys.ts): what a forger can and
 * cannot get from it, against a real JWKS served over HTTP.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { errors } from 'jose'
import { createKeySource, JwksUnavailableError } from '../../src/keys.js'

const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS256', use: 'sig' }] })
let fetches = 0
const server = createServer((_req, res) => {
  fetches++
  res.writeHead(200, { 'content-type': 'application/json' }).end(jwks)
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
t.teardown(() => { server.closeAllConnections(); server.close() })
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`
const SKEW_MS = 30_000
const nowSeconds = (): number => Math.floor(Date.now() / 1000)
const outcome = async (promise: Promise<unknown>): Promise<string> => await promise.then(() => 'key', (err: unknown) =>
  err instanceof JwksUnavailableError ? '503' : err instanceof errors.JWKSNoMatchingKey ? '401' : String(err))

t.test('an iat past the clock skew ahead is no newer key: the kid the set lacks is a 401, as the claims check would refuse it, not a 503 for as long as the iat is ahead', async (t) => {
  const keys = createKeySource(url, { cacheMaxAgeMs: 60_000, cooldownMs: 30_000, clockSkewMs: SKEW_MS })
  t.equal(await outcome(keys('k1', 'RS256', nowSeconds())), 'key', 'the set is fetched')
  const ahead = nowSeconds() + 3600
  t.equal(await outcome(keys('forged', 'RS256', ahead)), '401', 'the fetch it makes lacks the kid')
  t.equal(await outcome(keys('forged-too', 'RS256', ahead)), '401', 'and within the cooldown, answered from memory')
  t.equal(await outcome(keys('forged-also', 'RS256', Number.MAX_VALUE)), '401', 'however far ahead')
  t.equal(await outcome(keys('recent', 'RS256', nowSeconds())), '503', 'a recent iat within the cooldown is still not judged (a key begun moments ago)')
})

t.test('unknown kids with recent iats fetch the set at most once per cooldown', async (t) => {
  const keys = createKeySource(url, { cacheMaxAgeMs: 60_000, cooldownMs: 30_000, clockSkewMs: SKEW_MS })
  const before = fetches
  const answers = await Promise.all(Array.from({ length: 50 }, async () => await outcome(keys(randomUUID(), 'RS256', nowSeconds()))))
  for (let i = 0; i < 50; i++) answers.push(await outcome(keys(randomUUID(), 'RS256', nowSeconds())))
  t.same(new Set(answers), new Set(['503']), 'each a 503 with Retry-After')
  t.equal(fetches - before, 1, 'one fetch for a hundred forged kids')
})

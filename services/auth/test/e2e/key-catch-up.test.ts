/**
 * An instance that missed a key change (its LISTEN connection was down or
 * slow, so the NOTIFY never reached it) meets a token signed with the new key
 * by another instance: it reloads its keyring on that token instead of
 * refusing it until the periodic reload (Keyring.catchUp), and a flood of
 * forged kids costs each worker at most one reload per cooldown.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import t from 'tap'
import { request } from '@tessera/testkit'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { keyLifecycleEnv, startServer } from '../helpers/server.js'
import { jwksKids, kidOf, loginOver, refreshOver, signUpOver, sleep, within } from '../helpers/http.js'
import { lockKeys } from '../../src/keys/ensure.js'
import { generateSigningKey } from '../../src/keys/generate.js'
import { promoteKey, storeKey } from '../../src/keys/transitions.js'

const PASSWORD = 'correct horse battery'
const WORKERS = 2

async function me (base: string, accessToken: string): Promise<number> {
  return (await request(`${base}/v1/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status
}

const segment = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** A well-formed token under a kid no database holds: the header passes every check before the kid's, the signature is noise. */
function forged (typ: 'at+jwt' | 'rt+jwt'): string {
  const kid = randomBytes(32).toString('base64url')
  return `${segment({ alg: 'RS256', kid, typ })}.${segment({ sub: randomUUID(), jti: randomUUID() })}.${randomBytes(256).toString('base64url')}`
}

t.test('a token signed with a key whose NOTIFY this instance missed is accepted at once, and forged kids cost one reload per cooldown', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const kek = randomBytes(32).toString('base64url')
  // Within this test only a catch-up can make B hear of the new key: a 60 s backstop, and no transition
  // (a NOTIFY) due: the old key's private half is erased only TESSERA_REFRESH_GRACE + 1 s after it stops signing.
  const env = keyLifecycleEnv(databaseUrl, { TESSERA_KEY_PUBLISH_LEAD: '2m', TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '60s', TESSERA_REFRESH_GRACE: '60s', TESSERA_ISSUER: 'http://tessera.test', TESSERA_WORKERS: String(WORKERS), LOG_LEVEL: 'debug' }, kek)
  const b = await startServer(t, env)
  await signUpOver(b.url, 'kim', PASSWORD)
  const old = kidOf((await loginOver(b.url, 'kim', PASSWORD)).access_token)

  // `keys rotate --now` as the database sees it, without the NOTIFY: what B misses while its LISTEN connection is away.
  const { db } = await testConnection(t, databaseUrl)
  const key = await generateSigningKey(2048)
  await db.transaction().execute(async (trx) => {
    await lockKeys(trx)
    const now = new Date()
    await storeKey(trx, key, Buffer.from(kek, 'base64url'), now, { actor: 'operator' })
    await promoteKey(trx, key.kid, now, { actor: 'operator' }, 'rotate --now')
  })
  // A starts after the change, so it signs with the new key, as an instance that heard the NOTIFY does.
  const a = await startServer(t, env)
  const tokens = await loginOver(a.url, 'kim', PASSWORD)
  t.equal(kidOf(tokens.access_token), key.kid, 'A signs with the new key')
  t.not(key.kid, old)

  t.equal(await me(b.url, tokens.access_token), 200, 'B accepts the access token at /v1 at once')
  const refreshed = await refreshOver(b.url, tokens.refresh_token)
  t.equal(refreshed.status, 200, `B refreshes with the refresh token at once (${JSON.stringify(refreshed.body.error ?? null)})`)
  // pino writes the worker's line a moment after the answer.
  t.ok(await within(2000, async () => b.output().includes('the instance\'s LISTEN connection missed a key change')) !== undefined, 'B says its LISTEN connection missed a key change')
  // The worker that met the kid told its primary: the whole instance now publishes and signs with the new key.
  const caughtUp = await within(2000, async () => (await jwksKids(b.url)).includes(key.kid))
  t.ok(caughtUp !== undefined, 'B publishes the new key')
  const signers = new Set<string>()
  for (let i = 0; i < 4 * WORKERS; i++) signers.add(kidOf((await loginOver(b.url, 'kim', PASSWORD)).access_token))
  t.same([...signers], [key.kid], 'every worker of B signs with the new key')

  // A flood of well-formed tokens under kids nobody holds: all refused, and few reloads.
  // Past the cooldown of the catch-ups above, so the flood's first kid makes a worker reload.
  await sleep(1100)
  const unknownToDb = (): number => b.output().split('\n').filter((line) => line.includes('a token named a kid unknown to the database too')).length
  const before = unknownToDb()
  const started = Date.now()
  const statuses: number[] = []
  for (let batch = 0; batch < 10; batch++) {
    statuses.push(...await Promise.all(Array.from({ length: 20 }, async () => await me(b.url, forged('at+jwt')))))
    statuses.push(...await Promise.all(Array.from({ length: 10 }, async () => (await refreshOver(b.url, forged('rt+jwt'))).status)))
  }
  const seconds = (Date.now() - started) / 1000
  t.equal(statuses.length, 300)
  t.same([...new Set(statuses)].sort(), [400, 401], 'a forged kid is refused: 401 at /v1, invalid_grant at /oauth/token')
  t.equal(statuses.filter((s) => s === 401).length, 200)
  // The last reload's line may be written a moment after its request's answer.
  await within(1000, async () => unknownToDb() > before)
  const reloads = unknownToDb() - before
  const bound = WORKERS * (Math.floor(seconds) + 1)
  t.ok(reloads >= 1 && reloads <= bound, `${reloads} reload(s) for 300 forged kids in ${seconds.toFixed(1)} s (at most ${bound}: one per second per worker)`)
})

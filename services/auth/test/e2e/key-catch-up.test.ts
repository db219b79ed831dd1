/**
 * An instance that missed a key change (its LISTEN connection was down or
 * slow, so the NOTIFY never reached it) meets a token signed with the new key
 * by another instance: it reloads its keyring on that token instead of
 * refusing it until the periodic reload (Keyring.catchUp), and a flood of
 * forged kids costs each worker at most one reload per cooldown. It warns of
 * a missed change only for a key published longer ago than a NOTIFY takes: a
 * token under one published moments ago is the race of `keys rotate --now`.
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
import { decodeJsonSegment, signCompactJws } from '../../src/tokens/jws.js'

const PASSWORD = 'correct horse battery'
const WORKERS = 2
/**
 * How long a log line or a catch-up may take to show: only one that never
 * comes should run it out. Nothing else brings B the key in that time (the
 * test puts its periodic reload and the key timer's next step an hour away),
 * and how soon is the machine's speed: 2 s was, three test files at once.
 */
const SHOWN_WITHIN_MS = 15_000

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
  // Within this test only a catch-up can make B hear of the new key: an hourly backstop (at 60 s, one
  // could come between a rotation and B's meeting its token on a slow machine, or inside a wait), and no transition
  // (a NOTIFY) due: the old key's private half is erased only TESSERA_REFRESH_GRACE + 1 s after it stops signing.
  const env = keyLifecycleEnv(databaseUrl, { TESSERA_KEY_PUBLISH_LEAD: '2h', TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_CHECK_INTERVAL: '1h', TESSERA_REFRESH_GRACE: '1h', TESSERA_ISSUER: 'http://tessera.test', TESSERA_WORKERS: String(WORKERS), LOG_LEVEL: 'debug' }, kek)
  const b = await startServer(t, env)
  await signUpOver(b.url, 'kim', PASSWORD)
  const old = kidOf((await loginOver(b.url, 'kim', PASSWORD)).access_token)

  // A key published a minute ago and promoted now, as the database sees it, without the NOTIFYs: what B misses while its LISTEN connection is away.
  const { db } = await testConnection(t, databaseUrl)
  // Published `agoMs` before it is stored, the key already made: a slow generation does not age it.
  const rotate = async (agoMs: number): Promise<Awaited<ReturnType<typeof generateSigningKey>>> => {
    const made = await generateSigningKey(2048)
    await db.transaction().execute(async (trx) => {
      await lockKeys(trx)
      await storeKey(trx, made, Buffer.from(kek, 'base64url'), new Date(Date.now() - agoMs), { actor: 'operator' })
      await promoteKey(trx, made.kid, new Date(), { actor: 'operator' }, 'rotate --now')
    })
    return made
  }
  const key = await rotate(60_000)
  // A starts after the change, so it signs with the new key, as an instance that heard the NOTIFY does.
  const a = await startServer(t, env)
  const tokens = await loginOver(a.url, 'kim', PASSWORD)
  t.equal(kidOf(tokens.access_token), key.kid, 'A signs with the new key')
  t.not(key.kid, old)

  t.equal(await me(b.url, tokens.access_token), 200, 'B accepts the access token at /v1 at once')
  const refreshed = await refreshOver(b.url, tokens.refresh_token)
  t.equal(refreshed.status, 200, `B refreshes with the refresh token at once (${JSON.stringify(refreshed.body.error ?? null)})`)
  // pino writes the worker's line a moment after the answer.
  const lines = (text: string): string[] => b.output().split('\n').filter((line) => line.includes(text))
  const MISSED = 'the instance\'s LISTEN connection missed a key change'
  t.ok(await within(SHOWN_WITHIN_MS, async () => lines(MISSED).some((line) => line.includes(`"kid":"${key.kid}"`) && line.includes('"level":40'))) !== undefined, 'B warns that its LISTEN connection missed a key change')
  // The worker that met the kid told its primary: the whole instance now publishes and signs with the new key.
  const caughtUp = await within(SHOWN_WITHIN_MS, async () => (await jwksKids(b.url)).includes(key.kid))
  t.ok(caughtUp !== undefined, 'B publishes the new key')
  const signers = new Set<string>()
  for (let i = 0; i < 4 * WORKERS; i++) signers.add(kidOf((await loginOver(b.url, 'kim', PASSWORD)).access_token))
  t.same([...signers], [key.kid], 'every worker of B signs with the new key')

  // `keys rotate --now` a moment ago, B not told yet, and a token under the
  // new key from an instance that was: the race of every such rotation, not a
  // missed change. Signed here, as A would, so that no instance's start
  // stands between the promotion and B's catch-up.
  await sleep(1100)
  const warned = lines(MISSED).length
  const racing = await rotate(0)
  const [, payload] = tokens.access_token.split('.')
  const resigned = signCompactJws({ alg: 'RS256', kid: racing.kid, typ: 'at+jwt' }, decodeJsonSegment(payload ?? ''), racing.privateKey)
  t.equal(await me(b.url, resigned), 200, 'B accepts a token under a key promoted a moment ago')
  const RACE = 'a token named a key published moments ago, before this instance heard of it: reloaded the keyring'
  t.ok(await within(SHOWN_WITHIN_MS, async () => lines(RACE).some((line) => line.includes(`"kid":"${racing.kid}"`) && line.includes('"level":30'))) !== undefined, 'B says so at info (published moments ago: worker.ts, NOTIFY_PATH_ALLOWANCE_MS)')
  t.equal(lines(MISSED).length, warned, 'and does not warn of a missed change')

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
  // Each request that reloaded waited for its reload, so its worker logged the reload before the request's own line,
  // which is written after the answer: once all 300 request lines are in, so is every reload's.
  const refusedForged = (line: string): boolean => {
    if (!line.startsWith('{')) return false
    const { msg, route, status } = JSON.parse(line) as { msg?: string, route?: string, status?: number }
    return msg === 'request' && ((route === '/v1/me' && status === 401) || (route === '/oauth/token' && status === 400))
  }
  await b.logOf(statuses.length, refusedForged)
  const reloads = unknownToDb() - before
  const bound = WORKERS * (Math.floor(seconds) + 1)
  t.ok(reloads >= 1 && reloads <= bound, `${reloads} reload(s) for 300 forged kids in ${seconds.toFixed(1)} s (at most ${bound}: one per second per worker)`)
})

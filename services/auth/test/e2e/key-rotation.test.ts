/**
 * Publish-before-sign, end to end: real servers rotate on a short schedule
 * while a client logs in and refreshes and a verifier with a cached remote
 * JWKS (jose, cache as long as the JWKS max-age) checks every access token.
 * No verification may fail. Run against one instance and, at the same time,
 * against two instances on one database, where tokens from one instance are
 * verified with the other's JWKS and the schedule must yield exactly one
 * rotation per period.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { keyLifecycleEnv, startServer } from '../helpers/server.js'
import { jwksKids, loginOver, refreshOver, remoteVerifier, signUpOver, sleep, verifyAccess, within } from '../helpers/http.js'

const ISSUER = 'http://tessera.test'
const CHURN_MS = 20_000
const ROTATION_S = 4

function env (databaseUrl: string, kek: string): Record<string, string> {
  return keyLifecycleEnv(databaseUrl, {
    TESSERA_ISSUER: ISSUER,
    // The shortest lead these allow: 1 s max-age + 1 s key check + 2 s for a gateway.
    TESSERA_KEY_PUBLISH_LEAD: '4s',
    TESSERA_KEY_CHECK_INTERVAL: '1s',
    TESSERA_KEY_ROTATION: `${ROTATION_S}s`,
    TESSERA_ACCESS_TTL: '10s'
  }, kek)
}

interface ChurnResult { verified: number, failures: string[], kids: Set<string> }

/** Logs in (every fourth turn) or refreshes, round-robin over the issuers, and verifies each access token with the next verifier in line. */
async function churn (issuers: string[], username: string): Promise<ChurnResult> {
  const verifiers = issuers.map((base) => remoteVerifier(base, 1000))
  const password = 'correct horse battery'
  await signUpOver(issuers[0] ?? '', username, password)
  const result: ChurnResult = { verified: 0, failures: [], kids: new Set() }
  let refreshToken: string | undefined
  const end = Date.now() + CHURN_MS
  for (let turn = 0; Date.now() < end; turn++) {
    const issuer = issuers[turn % issuers.length] ?? ''
    const verifier = verifiers[(turn + 1) % verifiers.length]
    if (verifier === undefined) throw new Error('no verifier')
    let access: string
    if (refreshToken === undefined || turn % 4 === 0) {
      const tokens = await loginOver(issuer, username, password)
      access = tokens.access_token
      refreshToken = tokens.refresh_token
    } else {
      const res = await refreshOver(issuer, refreshToken)
      if (res.status !== 200) {
        result.failures.push(`refresh ${res.status} ${JSON.stringify(res.body)}`)
        refreshToken = undefined
        continue
      }
      access = String(res.body.access_token)
      refreshToken = String(res.body.refresh_token)
    }
    try {
      result.kids.add(await verifyAccess(access, verifier, ISSUER))
      result.verified++
    } catch (err) {
      result.failures.push(`${(err as Error).name}: ${(err as Error).message}`)
    }
    await sleep(20)
  }
  return result
}

t.test(`rotation every ${ROTATION_S} s: no verifier ever meets an unknown kid; two instances rotate once per period`, async (t) => {
  const kek = randomBytes(32).toString('base64url')
  const [soloDb, pairDb] = await Promise.all([createTestDatabase(t), createTestDatabase(t)])
  const [solo, a, b] = await Promise.all([
    startServer(t, env(soloDb, kek)),
    startServer(t, env(pairDb, kek)),
    startServer(t, env(pairDb, kek))
  ])

  const [one, two] = await Promise.all([churn([solo.url], 'solo'), churn([a.url, b.url], 'pair')])
  for (const [name, run] of [['one instance', one], ['two instances', two]] as const) {
    t.same(run.failures, [], `${name}: zero failed verifications out of ${run.verified}`)
    t.ok(run.verified >= 40, `${name}: verified ${run.verified} tokens`)
    t.ok(run.kids.size >= 3, `${name}: ${run.kids.size} different kids signed`)
  }

  const pair = await testConnection(t, pairDb)
  // One snapshot: the schedule keeps running, and a key made between two reads would count in one and not the other.
  const [created, rows] = await pair.db.transaction().setIsolationLevel('repeatable read').execute(async (trx) => [
    await trx.selectFrom('audit_events').select('occurred_at').where('type', '=', 'key.created').orderBy('occurred_at').execute(),
    await trx.selectFrom('signing_keys').select('kid').execute()
  ] as const)
  t.equal(rows.length, created.length, 'one row per key.created event')
  const scheduled = created.slice(1).map((r) => r.occurred_at.getTime())
  const gaps = scheduled.slice(1).map((time, i) => time - (scheduled[i] ?? 0))
  t.ok(scheduled.length >= 3, `${scheduled.length} scheduled rotations in ${CHURN_MS / 1000} s`)
  t.ok(gaps.every((gap) => gap >= ROTATION_S * 1000 - 100), `exactly one new key per ${ROTATION_S} s period (gaps ${gaps.join(', ')} ms)`)

  // The schedule keeps running: a change lands every few seconds, and each
  // instance hears it by NOTIFY or its 1 s key check; the two agree from then
  // until the next one. Five periods to find them agreeing (two was the
  // machine's speed, three test files at once); two that never agree would
  // not in any.
  const same = await within(ROTATION_S * 5000, async () => {
    const [jwksA, jwksB] = await Promise.all([fetch(`${a.url}/.well-known/jwks.json`), fetch(`${b.url}/.well-known/jwks.json`)])
    return jwksA.headers.get('etag') === jwksB.headers.get('etag') && jwksA.headers.get('cache-control') === 'public, max-age=1, s-maxage=1'
  })
  t.ok(same !== undefined, 'both instances publish the same JWKS, cacheable for the max-age')
  t.ok((await jwksKids(solo.url)).length >= 3, 'demoted keys stay published')
})

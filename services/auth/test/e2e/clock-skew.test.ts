/**
 * Two instances on hosts whose clocks are a minute apart (one 30 s behind
 * the database's, one 30 s ahead; test/helpers/skewed-clock.mjs shifts each
 * one's Date) tell the time by Postgres's clock (db/database-clock.ts). With
 * their own clocks, a refresh on the one behind and the racing tab's
 * re-presentation on the one ahead a moment later were 60 s apart by the
 * stored used_at, past the 10 s grace window: the tab's refresh was taken for
 * a reuse and the user's session ended. And the one ahead minted access
 * tokens issued 30 s in the future. The CLI, on an operator's machine, too:
 * `keys rotate` there 5 min behind stamped the new key published 5 min early,
 * and the instances made it sign 5 min before verifiers caching the JWKS for
 * the lead could have fetched it.
 */
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { sql } from 'kysely'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { runCli, startServer } from '../helpers/server.js'
import { loginOver, refreshOver, signUpOver } from '../helpers/http.js'
import { decodeJsonSegment } from '../../src/tokens/jws.js'

const PASSWORD = 'correct horse battery'
const SKEW_MS = 30_000
/** How far a token's iat may be from this test's clock: the clocks' agreement is milliseconds, a slow machine's request a few seconds. */
const IAT_TOLERANCE_S = 10
const SKEWED_CLOCK = fileURLToPath(new URL('../helpers/skewed-clock.mjs', import.meta.url))

t.test('instances whose hosts\' clocks are a minute apart judge a racing tab\'s refresh on one clock, Postgres\'s', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env = (skewMs: number): Record<string, string> => ({
    DATABASE_URL: databaseUrl,
    TESSERA_WORKERS: '1',
    TESSERA_ISSUER: 'http://tessera.test',
    TESSERA_RATE_LIMIT: '1000000',
    NODE_OPTIONS: `--import=${SKEWED_CLOCK}`,
    SKEWED_CLOCK_MS: String(skewMs)
  })
  const kek = { TESSERA_KEK: Buffer.alloc(32, 7).toString('base64url') }
  const behind = await startServer(t, { ...env(-SKEW_MS), ...kek })
  const ahead = await startServer(t, { ...env(SKEW_MS), ...kek })

  // Each says how far its host is from Postgres, in the same words an operator reads.
  await behind.logOf(1, (line) => line.includes('this host\'s clock is 30.0 s behind Postgres\'s'))
  await ahead.logOf(1, (line) => line.includes('this host\'s clock is 30.0 s ahead of Postgres\'s'))

  await signUpOver(behind.url, 'ria', PASSWORD)
  const first = await loginOver(behind.url, 'ria', PASSWORD)
  const rotated = await refreshOver(behind.url, first.refresh_token)
  t.equal(rotated.status, 200, 'the first tab refreshes on the instance behind')
  const racing = await refreshOver(ahead.url, first.refresh_token)
  t.equal(racing.status, 200, 'the racing tab\'s re-presentation on the instance ahead, a moment later, is inside the grace window', { body: racing.body })
  t.equal(racing.body.refresh_token, rotated.body.refresh_token, 'and is answered with the same successor')
  const next = await refreshOver(behind.url, String(rotated.body.refresh_token))
  t.equal(next.status, 200, 'the session stands: its successor refreshes', { body: next.body })

  const issuedAt = (token: unknown): number => Number(decodeJsonSegment(String(token).split('.')[1] ?? '').iat)
  const nowS = Date.now() / 1000
  for (const [name, body] of [['behind', first], ['ahead', racing.body]] as const) {
    const iat = issuedAt(body.access_token)
    t.ok(Math.abs(iat - nowS) <= IAT_TOLERANCE_S, `the instance ${name} issues access tokens dated by Postgres's clock: iat ${iat - nowS} s from now`)
  }
})

t.test('a command run where the clock is 5 min behind dates what it stores by Postgres\'s clock', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env = { DATABASE_URL: databaseUrl, TESSERA_KEK: Buffer.alloc(32, 9).toString('base64url'), NODE_OPTIONS: `--import=${SKEWED_CLOCK}`, SKEWED_CLOCK_MS: String(-5 * 60_000) }
  t.equal((await runCli(['keys', 'rotate'], env)).code, 0, 'the first key')
  const rotated = await runCli(['keys', 'rotate', '--json'], env)
  t.equal(rotated.code, 0, 'a rotation publishes a key that signs after the lead', { stderr: rotated.stderr })
  const { db } = await testConnection(t, databaseUrl)
  const { rows } = await sql<{ age_s: number }>`SELECT extract(epoch FROM clock_timestamp() - published_at)::float8 AS age_s FROM signing_keys WHERE state = 'next'`.execute(db)
  t.equal(rows.length, 1, 'one key waits to sign')
  const age = rows[0]?.age_s ?? Number.NaN
  t.ok(age >= 0 && age <= IAT_TOLERANCE_S, `it was published now by Postgres's clock, not 5 min ago: ${age} s`)
})

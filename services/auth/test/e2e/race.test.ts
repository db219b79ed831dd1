import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { createTestDatabase } from '../helpers/db.js'
import { startServer } from '../helpers/server.js'

const PASSWORD = 'correct horse battery'

async function post (url: string, body: object): Promise<{ status: number, body: Record<string, string> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() as Record<string, string> }
}

async function raceOneToken (t: Test, url: string): Promise<void> {
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_REFRESH_GRACE: '30s' }
  const [a, b] = await Promise.all([startServer(t, env), startServer(t, env)])
  await post(`${a.url}/v1/users`, { username: 'racer', password: PASSWORD })
  const tokens = await post(`${b.url}/oauth/token`, { grant_type: 'password', username: 'racer', password: PASSWORD })
  t.equal(tokens.status, 200)

  const db = new pg.Client({ connectionString: url })
  await db.connect()
  t.teardown(async () => { await db.end() })
  const count = async (sql: string): Promise<number> => Number((await db.query(sql)).rows[0].n)
  const sessionsBefore = await count('SELECT count(*) AS n FROM sessions')

  const answers = await Promise.all(Array.from({ length: 50 }, async (_, i) =>
    await post(`${i % 2 === 0 ? a.url : b.url}/oauth/token`, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token })))
  t.same(answers.map((r) => r.status), Array(50).fill(200), 'every answer is 200')
  const successors = new Set(answers.map((r) => r.body.refresh_token))
  t.equal(successors.size, 1, 'all 50 carry the same successor refresh token')
  t.equal(await count('SELECT count(*) AS n FROM refresh_tokens WHERE parent_jti IS NOT NULL'), 1, 'exactly one successor row')
  t.equal(await count('SELECT count(*) AS n FROM sessions'), sessionsBefore, 'no session added')
  t.equal(await count('SELECT count(*) AS n FROM sessions WHERE revoked_at IS NOT NULL'), 0, 'none revoked')

  const next = await post(`${a.url}/oauth/token`, { grant_type: 'refresh_token', refresh_token: [...successors][0] ?? '' })
  t.equal(next.status, 200, 'the successor works on either process')
}

t.test('50 concurrent refreshes of one token from two processes: one successor, every answer the same', async (t) => {
  await raceOneToken(t, await createTestDatabase(t))
})

// Under serializable, racing tabs whose row lock another had just released
// were rolled back (40001) and answered 503; under a 50 ms lock_timeout,
// 500. Tessera sets its own on each connection (db/connect.ts, sessionSetup).
t.test('the same race on a database whose DBA made serializable the default and lock waits short', async (t) => {
  const url = await createTestDatabase(t)
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  const name = new URL(url).pathname.slice(1)
  await admin.query(`ALTER DATABASE "${name}" SET default_transaction_isolation = 'serializable'`)
  await admin.query(`ALTER DATABASE "${name}" SET lock_timeout = '50ms'`)
  await admin.end()
  await raceOneToken(t, url)
})

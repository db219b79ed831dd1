/**
 * An instance that may need more connections than its role may open: the
 * start says so (cluster/pool.ts), and a request whose connection Postgres
 * refuses (53300) is answered 503 with Retry-After, not a 500.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { connect } from '../../src/db/connect.js'
import { ensureRoles } from '../../src/db/roles.js'
import { asAdmin, createTestDatabase, scratchRoles, urlAs } from '../helpers/db.js'
import { refreshOver, within } from '../helpers/http.js'
import { startServer } from '../helpers/server.js'

const WARNING = /"msg":"this instance may hold up to \d+ connections/

t.test('a role that may open fewer connections than the instance holds: warned at start, 503 when refused', async (t) => {
  const roles = scratchRoles(t)
  const databaseUrl = await createTestDatabase(t)
  const admin = connect(databaseUrl)
  t.teardown(admin.close)
  await ensureRoles(admin.db, roles)
  // Two workers hold up to 2 × 10 + 6 = 26; the start itself needs about 7 at once.
  await asAdmin(`ALTER ROLE "${roles.runtime.name}" CONNECTION LIMIT 9`)
  const env = { DATABASE_URL: urlAs(databaseUrl, roles.runtime), TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '1000000' }

  const short = await startServer(t, env)
  const [warning = ''] = await short.logOf(1, (line) => WARNING.test(line))
  t.match(warning, /"level":40,/, 'at warn')
  t.match(warning, `up to 26 connections to Postgres (TESSERA_WORKERS=2: 2 × 10 for the HTTP workers, 6 for the primary), more than the 9 that role ${roles.runtime.name} may open (the role's CONNECTION LIMIT 9)`, 'names both numbers and the setting')
  t.match(warning, `lower TESSERA_WORKERS, or raise the role's limit (ALTER ROLE ${roles.runtime.name} CONNECTION LIMIT …)`, 'and what to change')

  // Many requests at once: each worker's pool opens connections past the role's limit, which Postgres refuses.
  const answers = await Promise.all(Array.from({ length: 60 }, async () => await fetch(`${short.url}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: randomBytes(32).toString('base64url') })
  })))
  const statuses = answers.map((answer) => answer.status)
  const refused = answers.filter((answer) => answer.status === 503)
  t.ok(refused.length > 0, `some requests found no connection: ${JSON.stringify(statuses)}`)
  t.notOk(statuses.some((status) => status >= 500 && status !== 503), 'never a 500')
  t.ok(refused.every((answer) => answer.headers.get('retry-after') !== null), 'each 503 says when to retry')
  // Once the burst is over, the connections it had are enough again: a worker
  // whose pool got none may wait for the other's idle ones to close (pg-pool's
  // 10 s idle timeout) before Postgres lets it open its own.
  const recovered = await within(20_000, async () => (await refreshOver(short.url, randomBytes(32).toString('base64url'))).status === 400, 250)
  t.ok(recovered !== undefined, 'an unknown refresh token, answered as such')
  await short.stop()

  await asAdmin(`ALTER ROLE "${roles.runtime.name}" CONNECTION LIMIT 40`)
  const enough = await startServer(t, env)
  const answered = await refreshOver(enough.url, randomBytes(32).toString('base64url'))
  t.equal(answered.status, 400)
  await enough.stop()
  t.notMatch(enough.output(), WARNING, 'no warning when the instance fits')
})

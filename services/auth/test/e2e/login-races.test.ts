import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t, { type Test } from 'tap'
import { createTestDatabase, lockWaiters } from '../helpers/db.js'
import { within } from '../helpers/http.js'
import { startServer } from '../helpers/server.js'

const PASSWORD = 'correct horse battery'
const NEW_PASSWORD = 'battery staple horse'

async function send (method: string, url: string, body: object, headers: Record<string, string> = {}): Promise<{ status: number, body: Record<string, string> }> {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() as Record<string, string> }
}

async function serverWithDb (t: Test, env: Record<string, string> = {}): Promise<{ url: string, db: pg.Client, databaseUrl: string }> {
  const databaseUrl = await createTestDatabase(t)
  const server = await startServer(t, { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), ...env })
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  t.teardown(async () => { await db.end() })
  return { url: server.url, db, databaseUrl }
}

t.test('a burst of parallel wrong guesses evaluates at most the threshold', async (t) => {
  const { url, db } = await serverWithDb(t, { TESSERA_LOGIN_BACKOFF_AFTER: '3', TESSERA_LOGIN_BACKOFF_BASE: '60s' })
  t.equal((await send('POST', `${url}/v1/users`, { username: 'burst', password: PASSWORD })).status, 201)
  const answers = await Promise.all(Array.from({ length: 12 }, async (_, i) =>
    await send('POST', `${url}/oauth/token`, { grant_type: 'password', username: 'burst', password: `wrong guess ${i}` })))
  const statuses = answers.map((a) => a.status).sort()
  const count = (status: number): number => statuses.filter((s) => s === status).length
  const [evaluated, shed] = [count(400), count(503)]
  t.equal(evaluated + count(429) + shed, 12, `every guess refused (400 evaluated, 429 backed off, 503 shed): ${statuses.join(',')}`)
  // A busy machine may shed a guess (503, event-loop or queue pressure): one
  // shed after it was counted is refunded, so fewer are evaluated, never more.
  t.ok(evaluated <= 3 && evaluated >= 3 - shed, `at most the threshold evaluated, fewer only by what was shed: ${statuses.join(',')}`)
  if (shed === 0) t.equal(evaluated, 3, 'on a machine that shed none, exactly three')
  t.equal(Number((await db.query("SELECT failures FROM login_throttle WHERE username = 'burst'")).rows[0].failures), evaluated, 'the counter holds the guesses evaluated: a shed one is refunded')
})

t.test('logins of one name with the right password, more at once than the threshold: the rest get 429 with Retry-After, and succeed when retried', async (t) => {
  const { url, db, databaseUrl } = await serverWithDb(t, { TESSERA_LOGIN_BACKOFF_AFTER: '3' })
  t.equal((await send('POST', `${url}/v1/users`, { username: 'fleet', password: PASSWORD })).status, 201)
  // Hold the user's row, so that no login finishes (a success deletes the
  // counter) before every one of them has been counted or refused.
  const holder = new pg.Client({ connectionString: databaseUrl })
  await holder.connect()
  t.teardown(async () => { await holder.end() })
  await holder.query('BEGIN')
  await holder.query("SELECT id FROM users WHERE username = 'fleet' FOR UPDATE")
  const answered: Array<{ status: number, body: Record<string, string>, retryAfter: string | null, tookMs: number }> = []
  const logins = Array.from({ length: 8 }, async () => {
    const sentAt = Date.now()
    const res = await fetch(`${url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'password', username: 'fleet', password: PASSWORD }) })
    const answer = { status: res.status, body: await res.json() as Record<string, string>, retryAfter: res.headers.get('retry-after'), tookMs: Date.now() - sentAt }
    answered.push(answer)
    return answer
  })
  t.ok(await within(60_000, async () => answered.length + await lockWaiters(db) >= 8) !== undefined, 'each login answered at once or, verified, waiting for the row')
  await holder.query('ROLLBACK')
  const answers = await Promise.all(logins)
  const statuses = answers.map((a) => a.status).sort()
  const count = (status: number): number => statuses.filter((s) => s === status).length
  t.equal(count(200) + count(429) + count(503), 8, `only successes, back-offs and sheds: ${statuses.join(',')}`)
  // A busy machine may shed a login (503): fewer succeed then, never more.
  t.ok(count(200) <= 3, `at most the threshold succeeded: ${statuses.join(',')}`)
  if (count(503) === 0) t.equal(count(200), 3, 'on a machine that shed none, exactly three')
  // The block is a second from the attempt that reached the threshold. A refused request's own clock reading
  // can predate that attempt's (they race), so what is left of it, rounded up, is 2 s or more on a slow machine:
  // at most the second plus the refused request's own time.
  for (const refused of answers.filter((a) => a.status === 429)) {
    t.equal(refused.body.error, 'temporarily_unavailable')
    const wait = Number(refused.retryAfter)
    t.ok(wait >= 1 && wait <= 1 + Math.ceil(refused.tookMs / 1000), `told to retry in about a second (Retry-After ${wait}, answered in ${refused.tookMs} ms)`)
  }
  const retried = await send('POST', `${url}/oauth/token`, { grant_type: 'password', username: 'fleet', password: PASSWORD })
  t.equal(retried.status, 200, 'a retry once they are done succeeds: their successes cleared the count')
})

/** Backends of this database waiting on a lock. */
t.test('a login in flight during a password change does not start a session after it', async (t) => {
  const { url, db, databaseUrl } = await serverWithDb(t)
  t.equal((await send('POST', `${url}/v1/users`, { username: 'inflight', password: PASSWORD })).status, 201)
  const owner = await send('POST', `${url}/oauth/token`, { grant_type: 'password', username: 'inflight', password: PASSWORD })
  t.equal(owner.status, 200)

  // Hold the user's row so both requests read the old password, verify it,
  // and then queue: the change first, the login behind it.
  const holder = new pg.Client({ connectionString: databaseUrl })
  await holder.connect()
  t.teardown(async () => { await holder.end() })
  await holder.query('BEGIN')
  await holder.query("SELECT id FROM users WHERE username = 'inflight' FOR UPDATE")
  const change = send('PUT', `${url}/v1/password`, { current_password: PASSWORD, new_password: NEW_PASSWORD }, { authorization: `Bearer ${owner.body.access_token ?? ''}` })
  t.ok(await within(30_000, async () => await lockWaiters(db) >= 1) !== undefined, 'the password change waits for the row')
  const loginInFlight = send('POST', `${url}/oauth/token`, { grant_type: 'password', username: 'inflight', password: PASSWORD })
  t.ok(await within(30_000, async () => await lockWaiters(db) >= 2) !== undefined, 'the login, its password verified, waits behind it')
  await holder.query('ROLLBACK')

  t.equal((await change).status, 200, 'the password changed')
  const login = await loginInFlight
  t.equal(login.status, 400, 'the login verified against the old password is refused')
  t.equal(login.body.error, 'invalid_grant')
  const live = await db.query('SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL')
  t.equal(Number(live.rows[0].n), 1, 'only the session that changed the password is live')
  const failed = await db.query("SELECT actor, username, detail FROM audit_events WHERE type = 'login.failed'")
  t.equal(failed.rows.length, 1)
  // Its streak counts the password change's check of the current password too (both count against the name).
  t.match(failed.rows, [{ actor: 'anonymous', username: 'inflight', detail: { reason: 'user_changed_during_login', failures: 2, blocked_until: null } }], 'the refused login is audited like any failed one')
})

t.test('two password changes at once are answered as if one came after the other', async (t) => {
  const { url, db, databaseUrl } = await serverWithDb(t)
  t.equal((await send('POST', `${url}/v1/users`, { username: 'twice', password: PASSWORD })).status, 201)
  const signIn = async (): Promise<string> => (await send('POST', `${url}/oauth/token`, { grant_type: 'password', username: 'twice', password: PASSWORD })).body.access_token ?? ''
  const [first, second] = [await signIn(), await signIn()]
  const holder = new pg.Client({ connectionString: databaseUrl })
  await holder.connect()
  t.teardown(async () => { await holder.end() })

  /** Both changes verify the same current password, then queue on the user's row in the order sent. */
  async function race (tokens: [string, string], passwords: [string, string]): Promise<number[]> {
    await holder.query('BEGIN')
    await holder.query("SELECT id FROM users WHERE username = 'twice' FOR UPDATE")
    const waiting = await lockWaiters(db)
    const a = send('PUT', `${url}/v1/password`, { current_password: PASSWORD, new_password: passwords[0] }, { authorization: `Bearer ${tokens[0]}` })
    t.ok(await within(30_000, async () => await lockWaiters(db) >= waiting + 1) !== undefined, 'the first waits for the row')
    const b = send('PUT', `${url}/v1/password`, { current_password: PASSWORD, new_password: passwords[1] }, { authorization: `Bearer ${tokens[1]}` })
    t.ok(await within(30_000, async () => await lockWaiters(db) >= waiting + 2) !== undefined, 'the second, its current password verified too, waits behind it')
    await holder.query('ROLLBACK')
    return [(await a).status, (await b).status]
  }
  const loginWith = async (password: string): Promise<number> => (await send('POST', `${url}/oauth/token`, { grant_type: 'password', username: 'twice', password })).status

  t.same(await race([first, second], ['first new password', 'second new password']), [200, 401],
    'the second\'s session was ended by the first (which ends every other session): refused as such, not told its change went through')
  t.equal(await loginWith('first new password'), 200, 'the first change holds')
  t.equal(await loginWith('second new password'), 400, 'the refused one changed nothing')

  // From one session, twice: the second verified a password that is no longer the current one.
  t.equal((await send('PUT', `${url}/v1/password`, { current_password: 'first new password', new_password: PASSWORD }, { authorization: `Bearer ${first}` })).status, 200)
  t.same(await race([first, first], ['third new password', 'fourth new password']), [200, 403], 'the second is refused: its current password is current no more')
  t.equal(await loginWith('third new password'), 200)
  t.equal(await loginWith('fourth new password'), 400)
})

import t from 'tap'
import { sql } from 'kysely'
import type { App } from '../../src/http/app-types.js'
import { buildTestApp, type Tokens } from '../helpers/app.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { spawn } from 'node:child_process'
import { CLI_ENTRY, runCli } from '../helpers/server.js'
import { SESSION_CLEANUP_LOCK } from '../../src/db/locks.js'

const UA = 'audit-test/1.0'

interface AuditRowJson {
  id: number
  type: string
  actor: string | null
  user_id: string | null
  username: string | null
  session_id: string | null
  ip: string | null
  user_agent: string | null
  request_id: string | null
  detail: Record<string, unknown>
  known_as?: string | null
}

t.test('every event is audited by the action that causes it, with who, where and which request; no secret anywhere', async (t) => {
  const url = await createTestDatabase(t)
  const connection = await testConnection(t, url)
  const { app, deps, logs, advance } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '2', TESSERA_LOGIN_BACKOFF_BASE: '30s', TESSERA_TRUST_PROXY: '127.0.0.1' }, { connection })
  const secrets: string[] = []
  let n = 0
  /** Sends with a known request id and user agent; returns the id to look for. */
  const send = async (method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, payload?: object, bearer?: string): Promise<{ id: string, status: number, body: Record<string, unknown> }> => {
    const id = `audit-${++n}`
    const headers: Record<string, string> = { 'x-request-id': id, 'user-agent': UA }
    if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`
    const res = await app.inject({ method, url: path, headers, ...(payload === undefined ? {} : { payload }) })
    t.equal(res.headers['x-request-id'], id, 'the request id is returned')
    return { id, status: res.statusCode, body: res.body === '' ? {} : res.json() }
  }
  const password = (text: string): string => { secrets.push(text); return text }
  const tokens = (body: Record<string, unknown>): Tokens => {
    const pair = body as unknown as Tokens
    secrets.push(pair.access_token, pair.refresh_token)
    return pair
  }
  const rowsFor = async (requestId: string): Promise<AuditRowJson[]> =>
    (await deps.db.selectFrom('audit_events').selectAll().where('request_id', '=', requestId).orderBy('id').execute()) as unknown as AuditRowJson[]
  /** The request's rows are exactly these, in order: t.match alone would pass a duplicate or an extra row. */
  const rowsAre = async (requestId: string, wanted: object[], what = `${requestId}: its audit rows`): Promise<AuditRowJson[]> => {
    const rows = await rowsFor(requestId)
    t.equal(rows.length, wanted.length, `${requestId}: ${wanted.length} audit row(s), no more`)
    t.match(rows, wanted, what)
    return rows
  }
  const where = { ip: '127.0.0.1', user_agent: UA }

  const created = await send('POST', '/v1/users', { username: 'Judy', password: password('judy password 1') })
  const userId = created.body.id as string
  await rowsAre(created.id, [{ type: 'user.created', actor: userId, user_id: userId, username: 'judy', ...where, request_id: created.id }])

  const ok = await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: 'judy password 1' })
  const a = tokens(ok.body)
  const [loginRow] = await rowsAre(ok.id, [{ type: 'login.succeeded' }])
  t.match(loginRow, { type: 'login.succeeded', actor: userId, user_id: userId, username: 'judy', ...where, request_id: ok.id })
  const sessionA = loginRow?.session_id ?? ''
  t.match(sessionA, /^[0-9a-f-]{36}$/)

  const wrong = await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: password('not judys password') })
  await rowsAre(wrong.id, [{ type: 'login.failed', actor: 'anonymous', user_id: userId, username: 'judy', ...where, detail: { reason: 'wrong_password', failures: 1, blocked_until: null } }])
  const unknown = await send('POST', '/oauth/token', { grant_type: 'password', username: 'nobody', password: password('nobodys password') })
  await rowsAre(unknown.id, [{ type: 'login.failed', actor: 'anonymous', user_id: null, username: 'nobody', ...where, detail: { reason: 'unknown_user' } }])
  await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: 'not judys password' })
  const backedOff = await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: 'judy password 1' })
  t.equal(backedOff.status, 429)
  await rowsAre(backedOff.id, [{ type: 'login.backed_off', actor: 'anonymous', user_id: userId, username: 'judy', ...where, request_id: backedOff.id, detail: { retry_after: Number } }])
  advance(31)

  const logins: Tokens[] = []
  for (let i = 0; i < 4; i++) logins.push(tokens((await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: 'judy password 1' })).body))
  const [b, c] = logins as [Tokens, Tokens]

  // Reuse: rotate b, then present the old one after the grace window.
  const rotated = await send('POST', '/oauth/token', { grant_type: 'refresh_token', refresh_token: b.refresh_token })
  tokens(rotated.body)
  advance(11)
  const reuse = await send('POST', '/oauth/token', { grant_type: 'refresh_token', refresh_token: b.refresh_token })
  t.equal(reuse.status, 400)
  const reuseRows = await rowsAre(reuse.id, [
    { type: 'session.ended', actor: 'system', user_id: userId, ...where, detail: { reason: 'reuse' } },
    { type: 'refresh.reuse_detected', actor: 'system', user_id: userId, ...where, detail: { jti: String } }
  ])
  t.equal(reuseRows[0]?.session_id, reuseRows[1]?.session_id)

  const revoked = await send('POST', '/oauth/revoke', { token: c.refresh_token })
  await rowsAre(revoked.id, [{ type: 'session.ended', user_id: userId, ...where, detail: { reason: 'revoke' } }])

  const sessions = await send('GET', '/v1/sessions', undefined, a.access_token)
  const other = (sessions.body.sessions as Array<{ id: string, current: boolean }>).find((s) => !s.current)?.id ?? ''
  const deleted = await send('DELETE', `/v1/sessions/${other}`, undefined, a.access_token)
  t.equal(deleted.status, 204)
  await rowsAre(deleted.id, [{ type: 'session.ended', actor: userId, session_id: other, ...where, detail: { reason: 'session_deleted' } }])

  const changed = await send('PUT', '/v1/password', { current_password: 'judy password 1', new_password: password('judy password 2') }, a.access_token)
  t.equal(changed.status, 200)
  // Of her four logins one is live by now: b ended on reuse, c was revoked, one of d and e was deleted.
  const changeRows = await rowsAre(changed.id, [
    { type: 'password.changed', actor: userId, user_id: userId, session_id: sessionA, ...where },
    { type: 'session.ended', user_id: userId, ...where, detail: { reason: 'password_change' } }
  ], 'every other session ended for the password change, one row each')
  t.not(changeRows[1]?.session_id, sessionA, 'but not the one that changed it')

  const f = tokens((await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: 'judy password 2' })).body)
  const out = await send('POST', '/v1/logout', {}, f.access_token)
  await rowsAre(out.id, [{ type: 'session.ended', actor: userId, ...where, detail: { reason: 'logout' } }])
  const g = tokens((await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: 'judy password 2' })).body)
  tokens((await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: 'judy password 2' })).body)
  const all = await send('POST', '/v1/logout', { all: true }, g.access_token)
  // Live by now: a (the password change kept it), g and the login after it.
  const allRows = await rowsAre(all.id, Array.from({ length: 3 }, () => ({ type: 'session.ended', detail: { reason: 'logout_all' } })), 'logout-all ends every live session, one row each')
  t.equal(new Set(allRows.map((r) => r.session_id)).size, 3, 'each a different session')

  tokens((await send('POST', '/oauth/token', { grant_type: 'password', username: 'judy', password: 'judy password 2' })).body)
  const disabled = await runCli(['users', 'disable', 'judy', '--json'], { DATABASE_URL: url })
  t.equal(disabled.code, 0, disabled.stderr)
  const disableRows = (await deps.db.selectFrom('audit_events').selectAll().where('type', 'in', ['user.disabled', 'session.ended']).where('actor', '=', 'operator').orderBy('id').execute()) as unknown as AuditRowJson[]
  t.equal(disableRows.length, 2, 'one session was live: one session.ended')
  t.match(disableRows, [
    { type: 'user.disabled', user_id: userId, username: 'judy', user_agent: 'tessera-cli' },
    { type: 'session.ended', user_id: userId, user_agent: 'tessera-cli', detail: { reason: 'user_disabled' } }
  ])

  const createdByCli = await runCli(['users', 'create', 'kim', '--json'], { DATABASE_URL: url }, password('kim password 1') + '\n')
  t.equal(createdByCli.code, 0, createdByCli.stderr)
  const kimCreated = await deps.db.selectFrom('audit_events').selectAll().where('type', '=', 'user.created').where('username', '=', 'kim').execute()
  t.equal(kimCreated.length, 1)
  t.match(kimCreated, [{ actor: 'operator', user_agent: 'tessera-cli' }])

  // `tessera audit tail`: the newest rows, oldest first, filtered by user.
  const tail = await runCli(['audit', 'tail', '--user', 'JUDY', '--limit', '3', '--json'], { DATABASE_URL: url })
  t.equal(tail.code, 0, tail.stderr)
  const tailed = JSON.parse(tail.stdout) as AuditRowJson[]
  t.equal(tailed.length, 3)
  t.equal(tailed.at(-1)?.type, 'session.ended', 'the newest row is last')
  t.ok(tailed.every((r) => r.user_id === userId || r.username === 'judy'))
  const human = await runCli(['audit', 'tail', '--user', 'nobody'], { DATABASE_URL: url })
  t.equal(human.code, 0, human.stderr)
  t.match(human.stdout, /^time\s+type\s+actor\s+user\s+session\s+key\s+ip\s+request\s+detail\n.*login\.failed\s+anonymous\s+nobody/s, 'rows about a name no user has')
  const keyRow = await deps.db.selectFrom('audit_events').select('kid').where('type', '=', 'key.created').executeTakeFirstOrThrow()
  const everyRow = await runCli(['audit', 'tail', '--limit', '1000'], { DATABASE_URL: url })
  t.match(everyRow.stdout, new RegExp(`key\\.created\\s+system\\s+-\\s+-\\s+${String(keyRow.kid)}\\s`), 'a key\'s events name the key')
  const lastOfJudy = tailed.map((r) => r.id)
  t.equal((await runCli(['users', 'delete', 'judy'], { DATABASE_URL: url })).code, 0)
  const afterDelete = JSON.parse((await runCli(['audit', 'tail', '--user', 'judy', '--limit', '4', '--json'], { DATABASE_URL: url })).stdout) as AuditRowJson[]
  t.same(afterDelete.slice(0, 3).map((r) => r.id), lastOfJudy, 'once judy is deleted, her events that kept only her id (session.ended) are still found by her name')
  t.match(afterDelete[3], { type: 'user.deleted', user_id: userId, username: 'judy' })
  t.same(afterDelete.map((r) => r.known_as), ['judy', 'judy', 'judy', 'judy'], 'each row of hers reads with her name, deleted or not')
  const readable = await runCli(['audit', 'tail', '--user', 'judy', '--limit', '4'], { DATABASE_URL: url })
  const sessionEnded = readable.stdout.split('\n').find((l) => l.includes('session.ended')) ?? ''
  t.match(sessionEnded, new RegExp(`session\\.ended\\s+\\S+\\s+judy \\(${userId}\\)`), 'a row that kept only her id shows her name beside it')
  const usage = await runCli(['audit', 'tail', '--limit', 'lots'], { DATABASE_URL: url })
  t.equal(usage.code, 2)
  t.match(usage.stderr, /--limit/)
  const unknownOption = await runCli(['audit', 'tail', '--since', 'yesterday'], { DATABASE_URL: url })
  t.equal(unknownOption.code, 2)

  // Every request's log lines carry its id; no secret reaches an audit row, a log line or the CLI.
  const lines = logs().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { reqId?: string, msg: string })
  const requestLines = lines.filter((l) => l.msg === 'request')
  t.same(requestLines.map((l) => l.reqId), Array.from({ length: n }, (_, i) => `audit-${i + 1}`), 'every request line carries the request id, one line per request')
  const handlingLines = lines.filter((l) => l.msg === 'oauth error')
  t.ok(handlingLines.length > 0 && handlingLines.every((l) => typeof l.reqId === 'string'), 'and so do the lines logged while handling it')
  const everything = [
    JSON.stringify(await deps.db.selectFrom('audit_events').selectAll().execute()),
    logs(),
    tail.stdout,
    human.stdout
  ].join('\n')
  t.ok(secrets.length > 20)
  for (const secret of secrets) {
    t.notOk(everything.includes(secret), `the secret ${secret.slice(0, 6)}… appears nowhere`)
    // A token's signature alone is as good as a leak of the token.
    const signature = secret.split('.')[2]
    if (signature !== undefined) t.notOk(everything.includes(signature), 'nor its signature')
  }
})

t.test('a malformed X-Request-Id is replaced; problem+json carries the id', async (t) => {
  const { app, logs } = await buildTestApp(t, { TESSERA_TRUST_PROXY: '127.0.0.1' })
  const check = async (app: App, given: string): Promise<string> => {
    const res = await app.inject({ method: 'GET', url: '/v1/me', headers: { 'x-request-id': given } })
    t.equal(res.statusCode, 401)
    t.equal(res.json().request_id, res.headers['x-request-id'])
    return String(res.headers['x-request-id'])
  }
  t.equal(await check(app, 'gateway-1234'), 'gateway-1234')
  const replaced = await check(app, 'has spaces and "quotes"')
  t.match(replaced, /^[0-9a-f-]{36}$/)
  t.match(logs(), new RegExp(`"reqId":"${replaced}"`))
  t.notMatch(logs(), /has spaces/)
})

t.test('audit tail escapes control characters; cleanup enforces the audit retention', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const now = Date.now()
  await db.insertInto('audit_events').values([
    { type: 'login.failed', actor: 'anonymous', username: 'evil\u001b[2J\u001b]0;owned\u0007\u009b31m\u202ename', occurred_at: new Date(now - 60_000) },
    { type: 'login.failed', actor: 'anonymous', username: 'ancient', occurred_at: new Date(now - 31 * 86400_000) }
  ]).execute()
  for (const args of [['audit', 'tail'], ['audit', 'tail', '--json']]) {
    const tail = await runCli(args, { DATABASE_URL: url })
    t.equal(tail.code, 0, tail.stderr)
    t.notMatch(tail.stdout.replaceAll('\n', ''), /\p{Cc}|\u202e/u, `${args.join(' ')}: no control character but newlines, no bidi override`)
    t.match(tail.stdout, /evil\\+u001b\[2J/, 'the escape is shown, escaped')
  }
  const json = await runCli(['audit', 'tail', '--json'], { DATABASE_URL: url })
  const parsed = JSON.parse(json.stdout) as AuditRowJson[]
  t.equal(parsed.length, 2)
  t.match(parsed, [{ username: 'evil\u001b[2J\u001b]0;owned\u0007\u009b31m\u202ename' }, { username: 'ancient' }], 'the JSON is still valid and exact')

  const cleanup = await runCli(['cleanup', '--json'], { DATABASE_URL: url, TESSERA_AUDIT_RETENTION: '30d' })
  t.equal(cleanup.code, 0, cleanup.stderr)
  t.match(JSON.parse(cleanup.stdout), { ran: true, audit_events: 1 })
  const left = await db.selectFrom('audit_events').select(['type', 'username', 'actor', 'detail']).orderBy('id').execute()
  t.same(left.map((r) => r.username), ['evil\u001b[2J\u001b]0;owned\u0007\u009b31m\u202ename', null], 'only the event older than 30 days went')
  t.match(left[1], { type: 'audit.pruned', actor: 'operator', detail: { deleted: 1, older_than: String, oldest: String, newest: String } }, 'and a row says so, by the operator: tessera cleanup ran it')

  // A retention of a second empties the trail, but for the row that says it did.
  await new Promise((resolve) => setTimeout(resolve, 1100))
  const all = await runCli(['cleanup', '--json'], { DATABASE_URL: url, TESSERA_AUDIT_RETENTION: '1s' })
  t.equal(all.code, 0, all.stderr)
  t.match(JSON.parse(all.stdout), { ran: true, audit_events: 2 })
  const trace = await db.selectFrom('audit_events').select(['type', 'detail']).execute()
  t.equal(trace.length, 1)
  t.match(trace, [{ type: 'audit.pruned', detail: { deleted: 2 } }])
})

t.test('tessera cleanup deletes everything due in one command, past one round\'s cap of 100 batches of 1,000', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const due = 100_500
  await sql`INSERT INTO audit_events (type, actor, occurred_at) SELECT 'login.failed', 'anonymous', now() - interval '31 days' FROM generate_series(1, ${due})`.execute(db)
  const cleanup = await runCli(['cleanup', '--json'], { DATABASE_URL: url, TESSERA_AUDIT_RETENTION: '30d' })
  t.equal(cleanup.code, 0, cleanup.stderr)
  t.same(JSON.parse(cleanup.stdout), { ran: true, sessions: 0, refresh_tokens: 0, audit_events: due }, 'every due row, counted once')
  const left = await db.selectFrom('audit_events').select(['type', sql<number>`(detail->>'deleted')::int`.as('deleted')]).orderBy('id').execute()
  t.equal(left.length, 101, 'only the audit.pruned rows are left')
  t.ok(left.every((row) => row.type === 'audit.pruned'))
  t.equal(left.reduce((sum, row) => sum + row.deleted, 0), due, 'and they account for every row')
  const again = await runCli(['cleanup'], { DATABASE_URL: url, TESSERA_AUDIT_RETENTION: '30d' })
  t.same([again.code, again.stdout], [0, 'deleted 0 session(s), 0 refresh token(s) and 0 audit event(s)\n'], 'nothing left for a second command')
})

t.test('tessera cleanup while the cleanup lock is held elsewhere: nothing done, without saying who holds it', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  await sql`INSERT INTO audit_events (type, actor, occurred_at) VALUES ('login.failed', 'anonymous', now() - interval '31 days')`.execute(db)
  const env = { DATABASE_URL: url, TESSERA_AUDIT_RETENTION: '30d' }
  // The lock as any holder takes it, an instance's job or another command: the session-level lock on one connection.
  await db.connection().execute(async (holder) => {
    t.same((await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${SESSION_CLEANUP_LOCK}) AS locked`.execute(holder)).rows, [{ locked: true }])
    try {
      const text = await runCli(['cleanup'], env)
      t.same([text.code, text.stdout, text.stderr], [0, 'another cleanup is running right now (an instance\'s, or another tessera cleanup); nothing done\n', ''],
        'the holder may be a command as well as an instance: the message names neither as the one')
      const json = await runCli(['cleanup', '--json'], env)
      t.same([json.code, JSON.parse(json.stdout)], [0, { ran: false, sessions: 0, refresh_tokens: 0, audit_events: 0 }])
    } finally {
      await sql`SELECT pg_advisory_unlock(${SESSION_CLEANUP_LOCK})`.execute(holder)
    }
  })
  t.equal((await db.selectFrom('audit_events').select('type').where('type', '=', 'login.failed').execute()).length, 1, 'the due row is left to the holder')
})

t.test('audit tail into a reader that stops early (| head): no crash, its own exit code', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  await db.insertInto('audit_events').values(Array.from({ length: 3000 }, (_, i) => ({ type: 'login.failed', actor: 'anonymous', username: `reader${i}` }))).execute()
  const child = spawn(process.execPath, [CLI_ENTRY, 'audit', 'tail', '--json', '--limit', '3000'], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: url }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  // Like head: read the first chunk, then close the pipe with the rest unread.
  child.stdout.once('data', () => { child.stdout.destroy() })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(stderr, '', 'nothing on stderr: no EPIPE stack')
  t.equal(code, 0)
})

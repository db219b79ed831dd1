/**
 * An operator's command, or a password change, reads the time once it holds
 * the row it changes: a login that committed while it waited for that row is
 * ended at a time after it began, and the audit trail reads in that order.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { decodeJwt } from 'jose'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildTestApp, login, signUp } from '../helpers/app.js'
import { createTestDatabase, lockWaiters, testConnection } from '../helpers/db.js'
import { within } from '../helpers/http.js'
import { runCli } from '../helpers/server.js'

const PASSWORD = 'correct horse battery'

// A few cold CLI starts, each parked behind a row lock for a second or more.
t.setTimeout(300_000)

/** `trail`: the audit rows of the login's session and of the command's change, in the order they are written. */
const COMMANDS: Array<{ args: string[], stdin?: string, locked: 'users' | 'clients', reason: string, audited: string, trail: string[] }> = [
  { args: ['users', 'disable', 'kim'], locked: 'users', reason: 'user_disabled', audited: 'user.disabled', trail: ['login.succeeded', 'user.disabled', 'session.ended'] },
  { args: ['users', 'set-password', 'kim'], stdin: 'another horse battery\n', locked: 'users', reason: 'password_change', audited: 'password.changed', trail: ['login.succeeded', 'password.changed', 'session.ended'] },
  { args: ['users', 'end-sessions', 'kim'], locked: 'users', reason: 'revoke', audited: 'session.ended', trail: ['login.succeeded', 'session.ended'] },
  // A client's disable audits itself after the sessions it ended, with their count.
  { args: ['clients', 'disable', 'tessera'], locked: 'clients', reason: 'client_disabled', audited: 'client.disabled', trail: ['login.succeeded', 'session.ended', 'client.disabled'] },
  { args: ['clients', 'delete', 'tessera'], locked: 'clients', reason: 'client_deleted', audited: 'client.deleted', trail: ['login.succeeded', 'session.ended', 'client.deleted'] }
]

for (const command of COMMANDS) {
  t.test(`${command.args.slice(0, 2).join(' ')}: a login that commits while the command waits for the ${command.locked === 'users' ? 'user' : 'client'}'s row is ended after it was issued`, async (t) => {
    const url = await createTestDatabase(t)
    const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
    // A running clock: the login is dated by the time it really happens, as the CLI's command is.
    const ctx = await buildTestApp(t, {}, { connection: await testConnection(t, url), realClock: true })
    const user = await signUp(ctx.app, 'kim', PASSWORD)

    // FOR SHARE, as a login's own check takes it: the command's lock waits
    // behind it, while a login's shared lock does not.
    const held = await ctx.connection.pool.connect()
    t.teardown(() => { held.release() })
    await held.query('BEGIN')
    if (command.locked === 'users') await held.query("SELECT 1 FROM users WHERE username = 'kim' FOR SHARE")
    else await held.query("SELECT 1 FROM clients WHERE client_id = 'tessera' FOR SHARE")
    const watcher = await ctx.connection.pool.connect()
    t.teardown(() => { watcher.release() })

    const running = runCli([...command.args, '--json'], env, command.stdin)
    t.ok(await within(60_000, async () => await lockWaiters(watcher) >= 1) !== undefined, 'the command waits for the row')
    // Session times are whole seconds: the login lands in a second that began
    // after the command had read any clock of its own.
    await sleep(1000 - Date.now() % 1000 + 50)
    await login(ctx.app, 'kim', PASSWORD)
    await held.query('COMMIT')
    const done = await running
    t.equal(done.code, 0, done.stderr)
    t.match(JSON.parse(done.stdout), { sessions_ended: 1 }, 'the login\'s session was ended by the command')

    const session = await ctx.connection.db.selectFrom('sessions').innerJoin('refresh_tokens', 'refresh_tokens.session_id', 'sessions.id')
      .select(['sessions.id', 'sessions.created_at', 'sessions.revoked_at', 'sessions.revoke_reason', 'refresh_tokens.issued_at']).where('sessions.user_id', '=', user.id).execute()
    t.equal(session.length, 1, 'one session, one token')
    const [ended] = session
    if (ended?.revoked_at == null) throw new Error('the session was not ended')
    t.equal(ended.revoke_reason, command.reason)
    t.ok(ended.revoked_at >= ended.issued_at, `revoked at ${ended.revoked_at.toISOString()}, not before its token was issued at ${ended.issued_at.toISOString()}`)
    t.ok(ended.revoked_at >= ended.created_at, 'nor before the session began')

    const state = await ctx.connection.db.selectFrom('users').select(['disabled_at', 'password_changed_at']).where('id', '=', user.id).executeTakeFirstOrThrow()
    if (command.audited === 'user.disabled') t.ok(state.disabled_at !== null && state.disabled_at >= ended.issued_at, 'the user is disabled after the login, not before')
    if (command.audited === 'password.changed') t.ok(state.password_changed_at >= ended.issued_at, 'the password changed after the login, not before')
    if (command.audited === 'client.disabled') {
      const client = await ctx.connection.db.selectFrom('clients').select('disabled_at').where('client_id', '=', 'tessera').executeTakeFirstOrThrow()
      t.ok(client.disabled_at !== null && client.disabled_at >= ended.issued_at, 'the client is disabled after the login, not before')
    }

    const audit = await ctx.connection.db.selectFrom('audit_events').select(['type', 'occurred_at'])
      .where((eb) => eb.or([eb('session_id', '=', ended.id), eb('type', '=', command.audited)])).orderBy('id').execute()
    t.same(audit.map((e) => e.type), command.trail)
    const times = audit.map((e) => e.occurred_at.getTime())
    t.same(times, [...times].sort((a, b) => a - b), `the trail's times read in its order: ${audit.map((e) => `${e.type} ${e.occurred_at.toISOString()}`).join(', ')}`)
  })
}

t.test('PUT /v1/password: a login that commits while the change waits for the user\'s row is ended after it was issued', async (t) => {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'kim', PASSWORD)
  const own = await login(ctx.app, 'kim', PASSWORD)
  const held = await ctx.connection.pool.connect()
  t.teardown(() => { held.release() })
  await held.query('BEGIN')
  await held.query("SELECT 1 FROM users WHERE username = 'kim' FOR SHARE")
  const watcher = await ctx.connection.pool.connect()
  t.teardown(() => { watcher.release() })
  const change = ctx.app.inject({ method: 'PUT', url: '/v1/password', headers: { authorization: `Bearer ${own.access_token}` }, payload: { current_password: PASSWORD, new_password: 'another horse battery' } })
  t.ok(await within(30_000, async () => await lockWaiters(watcher) >= 1) !== undefined, 'the change, its hashes done, waits for the row')
  ctx.advance(5)
  const other = await login(ctx.app, 'kim', PASSWORD)
  await held.query('COMMIT')
  t.equal((await change).statusCode, 200)
  const sid = String(decodeJwt(other.access_token).sid)
  const ended = await ctx.connection.db.selectFrom('sessions').select(['created_at', 'revoked_at', 'revoke_reason']).where('id', '=', sid).executeTakeFirstOrThrow()
  t.equal(ended.revoke_reason, 'password_change', 'the login that got in first is ended by the change')
  t.same(ended.revoked_at, ctx.deps.clock(), 'at the time the change took the row, after the login')
  const user = await ctx.connection.db.selectFrom('users').select('password_changed_at').where('username', '=', 'kim').executeTakeFirstOrThrow()
  t.same(user.password_changed_at, ctx.deps.clock())
})

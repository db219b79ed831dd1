import t from 'tap'
import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import { existsSync, promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { buildTestApp, login, refresh } from '../helpers/app.js'
import type { App } from '../../src/http/app-types.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { CLI_ENTRY, runCli } from '../helpers/server.js'
import { runProcess } from '@tessera/testkit'

const PASSWORD = 'correct horse battery'

// About forty CLI processes, each a cold Node start, one after another: on a
// machine at load 15 they need more than tap's 180 s, which is not what this
// file tests.
t.setTimeout(600_000)

t.test('users create reads the password from stdin; users disable ends sessions', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const created = await runCli(['users', 'create', 'Kim', '--json'], env, `${PASSWORD}\n`)
  t.equal(created.code, 0, created.stderr)
  const user = JSON.parse(created.stdout)
  t.equal(user.username, 'kim')

  const ctx = await buildTestApp(t, {}, { connection: await testConnection(t, url) })
  const tokens = await login(ctx.app, 'kim', PASSWORD)

  const again = await runCli(['users', 'create', 'kim'], env, PASSWORD)
  t.equal(again.code, 1)
  t.equal(again.stderr, 'tessera: username: kim is already taken\n', 'one line naming the name, no stack')
  const weak = await runCli(['users', 'create', 'lee'], env, 'short')
  t.equal(weak.code, 1)
  t.match(weak.stderr, /^tessera: password: must be 8 to 256 characters\n$/)
  // No password on stdin: the name is refused before one is asked for.
  const badName = await runCli(['users', 'create', 'Bad Name!'], env)
  t.equal(badName.code, 2, 'a name typed on the command line that can never be a user\'s is a usage error, as a bad client id is')
  t.equal(badName.stderr, 'tessera: username: must be 3 to 64 of a-z, 0-9, ".", "_", "-" (case-insensitive)\n')

  const disabled = await runCli(['users', 'disable', 'kim'], env)
  t.equal(disabled.code, 0, disabled.stderr)
  t.equal(disabled.stdout, 'disabled kim; ended 1 session(s)\n')
  t.equal((await refresh(ctx.app, tokens.refresh_token)).status, 400)
  const twice = await runCli(['users', 'disable', 'kim', '--json'], env)
  t.match(JSON.parse(twice.stdout), { already_disabled: true, sessions_ended: 0 })
  const nobody = await runCli(['users', 'disable', 'nobody'], env)
  t.equal(nobody.code, 1)
  t.equal(nobody.stderr, 'tessera: no user named nobody\n')
  const audit = await ctx.connection.db.selectFrom('audit_events').select(['type', 'actor']).where('user_id', '=', user.id).orderBy('id').execute()
  t.same(audit.map((e) => e.type), ['user.created', 'login.succeeded', 'user.disabled', 'session.ended'], 'the second disable wrote nothing')
})

t.test('keys list and usage errors', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  await buildTestApp(t, {}, { connection: await testConnection(t, url) })
  const keys = await runCli(['keys', 'list', '--json'], env)
  t.equal(keys.code, 0, keys.stderr)
  const listed = JSON.parse(keys.stdout) as unknown[]
  t.equal(listed.length, 1, 'the one key the first start made')
  t.match(listed, [{ state: 'current', bits: 2048, private_half: true }])
  // db's with DATABASE_URL set, too: a wrong word is told before the setting that makes db start|stop|url refuse.
  for (const args of [['cleanup', 'extra'], ['migrate', 'up', 'extra'], ['db', 'url', 'extra'], ['db'], ['db', 'bogus']]) {
    const refused = await runCli(args, env)
    t.same([refused.code, refused.stderr], [2, `tessera: usage: tessera ${args[0]}${args[0] === 'migrate' ? ' up | status | down --yes' : args[0] === 'db' ? ' start|stop|url|roles' : ''}\n`], `${args.join(' ')}: a word the command does not take is a usage error`)
  }
  const migrations = (await runCli(['migrate', 'status', '--json'], env)).stdout
  for (const args of [['cleanup', '--dry-run'], ['migrate', 'up', '--dry-run'], ['migrate', 'down', '--yes', '--force'], ['db', 'roles', '--dry-run']]) {
    const refused = await runCli(args, env)
    t.equal(refused.code, 2, `${args.join(' ')}: a flag the command does not take is a usage error, before it runs`)
    t.match(refused.stderr, /^tessera: --(dry-run|force) is not a flag of (cleanup|migrate up|migrate down|db roles)\nusage: /)
  }
  t.equal((await runCli(['migrate', 'status', '--json'], env)).stdout, migrations, 'migrate down --yes --force reverted nothing')
  const keysBefore = (await runCli(['keys', 'list', '--json'], env)).stdout
  for (const args of [['--dry-run', 'users', 'import', '/nonexistent.csv'], ['--now', 'keys', 'rotate'], ['--bogus', 'keys', 'list']]) {
    const refused = await runCli(args, env)
    t.same([refused.code, refused.stderr], [2, `tessera: "${args[0] ?? ''}" is not a flag of tessera itself: put a command's flags after its name (tessera ${args[1] ?? ''} --help)\n`],
      `${args.join(' ')}: a command's flag before its name is refused, not dropped`)
  }
  t.equal((await runCli(['keys', 'list', '--json'], env)).stdout, keysBefore, 'nothing ran: no key made')
  t.equal((await runCli(['--json', 'keys', 'list'], env)).code, 0, '--json is tessera\'s own, before the command or after')
  const unset = await runCli(['db', 'roles'], env)
  t.same([unset.code, unset.stderr], [1, 'tessera: TESSERA_DB_OWNER_PASSWORD is required for `tessera db roles`\n'], 'a setting missing is exit 1, as every other setting\'s')
  t.notMatch(migrations, /"applied_at":null/, 'every migration applied before')
  const cleanup = await runCli(['cleanup', '--json'], env)
  t.equal(cleanup.code, 0, cleanup.stderr)
  t.same(JSON.parse(cleanup.stdout), { ran: true, sessions: 0, refresh_tokens: 0, audit_events: 0 })
  const usage = await runCli(['frobnicate'], env)
  t.equal(usage.code, 2)
  t.equal(usage.stdout, '')
  t.equal(usage.stderr, 'tessera: unknown command "frobnicate" (see tessera --help)\n')
  for (const args of [['keys', 'revoke'], ['keys', 'rewrap', '--json']]) {
    // Without a KEK the command would fail (exit 1) if it read it before checking its arguments.
    const missing = await runCli(args, { DATABASE_URL: url, NODE_ENV: 'production' })
    t.equal(missing.code, 2, `${args.join(' ')} without its argument is a usage error`)
    t.match(missing.stderr, /usage: tessera keys/)
  }
  // An empty or blank id (an unset shell variable, `keys revoke "$KID"`) is no id: a usage error, never "no signing key has kid " or a filter matching nothing.
  for (const args of [['keys', 'revoke', ''], ['keys', 'revoke', ' \t'], ['keys', 'rewrap', '--new-kek-file', '']]) {
    const blank = await runCli(args, { DATABASE_URL: url, NODE_ENV: 'production' })
    t.same([blank.code, blank.stderr], [2, `tessera: ${args[1] === 'revoke' ? 'KID' : '--new-kek-file'}: must not be empty\nusage: tessera keys list | rotate [--now] | revoke KID | rewrap --new-kek-file FILE\n`], `${JSON.stringify(args)}: a usage error`)
  }
  for (const user of ['', '  ']) {
    const blank = await runCli(['audit', 'tail', '--user', user], env)
    t.same([blank.code, blank.stderr], [2, 'tessera: --user: expected a username or a user id\nusage: tessera audit tail [--user USERNAME|USER_ID] [--limit N] [--json]\n'], `audit tail --user ${JSON.stringify(user)}: a usage error`)
  }
  for (const args of [['clients', 'show', ''], ['clients', 'delete', ' '], ['users', 'show', ''], ['users', 'end-sessions', ' ']]) {
    t.equal((await runCli(args, { DATABASE_URL: url, NODE_ENV: 'production' })).code, 2, `${JSON.stringify(args)}: a usage error, as before`)
  }
  const badEnv = await runCli(['keys', 'list'], { ...env, TESSERA_KEY_BITS: '1000' })
  t.equal(badEnv.code, 1)
  t.equal(badEnv.stderr, 'tessera: TESSERA_KEY_BITS="1000" is invalid: expected one of 2048, 3072, 4096\n')
})

t.test('TESSERA_KEY_BITS is the modulus of the keys the commands make', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_KEY_BITS: '3072' }
  const rotated = await runCli(['keys', 'rotate', '--now', '--json'], env)
  t.equal(rotated.code, 0, rotated.stderr)
  const kid = String(JSON.parse(rotated.stdout).created)
  const listed = JSON.parse((await runCli(['keys', 'list', '--json'], env)).stdout) as Array<{ kid: string, bits: number }>
  t.same(listed.map((key) => [key.kid, key.bits]), [[kid, 3072]], 'listed with its size')
  const { db } = await testConnection(t, url)
  const { public_jwk: jwk } = await db.selectFrom('signing_keys').select('public_jwk').where('kid', '=', kid).executeTakeFirstOrThrow()
  t.equal(Buffer.from(jwk.n, 'base64url').length * 8, 3072, 'and its published modulus is that long, not only labelled so')
})

t.test('--help and --version on stdout with exit 0; no command is a usage error', async (t) => {
  const help = await runCli(['--help'], {})
  t.equal(help.code, 0)
  t.equal(help.stderr, '')
  t.match(help.stdout, /^usage: tessera <command> \[--json\]/)
  t.match(help.stdout, /users end-sessions USERNAME/)
  t.match(help.stdout, /Exit status: 0 done, 1 failed, 2 usage error/)

  const users = await runCli(['users', '--help'], {})
  t.equal(users.code, 0)
  t.equal(users.stderr, '')
  t.match(users.stdout, /users set-password USERNAME/)
  t.notMatch(users.stdout, /keys rotate/, 'only the lines of that command')
  const keys = await runCli(['keys', '-h'], {})
  t.match(keys.stdout, /keys rotate \[--now\][^\n]*\n\s+--now: it signs at once/, 'continuation lines come along')

  const version = await runCli(['--version'], {})
  t.equal(version.code, 0)
  t.match(version.stdout, /^tessera \d+\.\d+\.\d+\n$/)
  t.match(JSON.parse((await runCli(['--version', '--json'], {})).stdout), { version: /^\d+\.\d+\.\d+$/ })

  const none = await runCli([], {})
  t.equal(none.code, 2)
  t.equal(none.stdout, '')
  t.match(none.stderr, /^usage: tessera/)
  const badFlag = await runCli(['users', 'list', '--bogus'], { DATABASE_URL: 'postgres://127.0.0.1:1/none' })
  t.equal(badFlag.code, 2, 'an unknown flag is a usage error')
  const noDatabase = await runCli(['users', 'list'], { DATABASE_URL: 'postgres://127.0.0.1:1/none' })
  t.same([noDatabase.code, noDatabase.stderr], [1, 'tessera: cannot reach the database: connect ECONNREFUSED 127.0.0.1:1\n'], 'a database out of reach says so, in one line')
  const stopped = await runCli(['users', 'list'], { DATABASE_URL: 'postgres://tessera@127.0.0.1:5432/none?host=%2Fnonexistent-tessera-dir' })
  t.same([stopped.code, stopped.stderr], [1, 'tessera: cannot reach the database: connect ENOENT /nonexistent-tessera-dir/.s.PGSQL.5432\n'], 'a stopped server\'s missing socket too')
})

t.test('without DATABASE_URL and no embedded Postgres yet, a command names the database instead of creating one', async (t) => {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-nodb-'))
  t.teardown(async () => { await fs.rm(dataDir, { recursive: true, force: true }) })
  const result = await runCli(['users', 'list'], { TESSERA_DATA_DIR: dataDir })
  t.equal(result.code, 1)
  t.equal(result.stderr, `tessera: DATABASE_URL is unset and no embedded Postgres has been started from this checkout (none under ${dataDir}): set DATABASE_URL to the database to operate on, or run \`tessera db start\` to make a local one\n`)
  t.same(await fs.readdir(dataDir), [], 'nothing was created')
})

t.test('a database no migrate up has prepared: the command says to run it', async (t) => {
  const url = await createTestDatabase(t)
  const connection = await testConnection(t, url)
  await sql`DROP SCHEMA public CASCADE`.execute(connection.db)
  await sql`CREATE SCHEMA public`.execute(connection.db)
  const result = await runCli(['users', 'list'], { DATABASE_URL: url })
  t.same([result.code, result.stderr], [1, 'tessera: the database has no Tessera tables yet (relation "users" does not exist): run `tessera migrate up` first\n'])
})

async function loginStatus (app: App, username: string, password: string): Promise<number> {
  return (await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username, password } })).statusCode
}

t.test('users list, show, enable, delete, set-password, end-sessions against the database', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const ctx = await buildTestApp(t, {}, { connection: await testConnection(t, url) })
  for (const name of ['ann', 'bob']) t.equal((await runCli(['users', 'create', name], env, PASSWORD)).code, 0)
  const annTokens = await login(ctx.app, 'ann', PASSWORD)
  await login(ctx.app, 'ann', PASSWORD)

  const list = await runCli(['users', 'list', '--json'], env)
  t.equal(list.code, 0, list.stderr)
  const users = JSON.parse(list.stdout) as unknown[]
  t.equal(users.length, 2)
  t.match(users, [{ username: 'ann', live_sessions: 2, disabled_at: null }, { username: 'bob', live_sessions: 0 }])
  t.match((await runCli(['users', 'list'], env)).stdout, /^username\s+id\s+created\s+state\s+sessions\nann\s+\S+\s+[\d-]+ [\d:]+\s+enabled\s+2\n/)

  const show = await runCli(['users', 'show', 'ANN', '--json'], env)
  t.match(JSON.parse(show.stdout), { username: 'ann', live_sessions: 2 })
  t.match((await runCli(['users', 'show', 'ann'], env)).stdout, /^id: \S+\nusername: ann\n/)

  const ended = await runCli(['users', 'end-sessions', 'ann', '--json'], env)
  t.match(JSON.parse(ended.stdout), { username: 'ann', sessions_ended: 2 })
  t.equal((await refresh(ctx.app, annTokens.refresh_token)).status, 400, 'the refresh token no longer works')

  t.equal((await runCli(['users', 'disable', 'bob'], env)).code, 0)
  const disabled = JSON.parse((await runCli(['users', 'list', '--disabled', '--json'], env)).stdout) as unknown[]
  t.equal(disabled.length, 1, 'bob only')
  t.match(disabled, [{ username: 'bob', disabled_at: /^\d{4}-/ }])
  t.equal((await runCli(['users', 'list', '--disabled'], env)).stdout.split('\n').length, 3, 'a header and bob')
  t.equal(await loginStatus(ctx.app, 'bob', PASSWORD), 400, 'disabled bob cannot log in')
  const enabled = await runCli(['users', 'enable', 'bob'], env)
  t.equal(enabled.stdout, 'enabled bob\n')
  t.equal((await runCli(['users', 'enable', 'bob'], env)).stdout, 'already enabled bob\n')
  await login(ctx.app, 'bob', PASSWORD)

  const weak = await runCli(['users', 'set-password', 'bob'], env, 'short')
  t.equal(weak.code, 1)
  t.equal(weak.stderr, 'tessera: password: must be 8 to 256 characters\n')
  const reset = await runCli(['users', 'set-password', 'bob', '--json'], env, 'a brand new passphrase\n')
  t.match(JSON.parse(reset.stdout), { username: 'bob', sessions_ended: 1 })
  t.equal(await loginStatus(ctx.app, 'bob', PASSWORD), 400, 'the old password is refused')
  await login(ctx.app, 'bob', 'a brand new passphrase')

  // A flag a command does not take is refused before it does anything, never ignored.
  const imagined = await runCli(['users', 'delete', 'bob', '--dry-run'], env)
  t.equal(imagined.code, 2, 'users delete --dry-run: a usage error')
  t.match(imagined.stderr, /^tessera: --dry-run is not a flag of users delete\nusage: tessera users list/)
  t.equal((await runCli(['users', 'show', 'bob'], env)).code, 0, 'and bob is still there')
  const listFlag = await runCli(['users', 'list', '--disable'], env)
  t.same([listFlag.code, listFlag.stderr.split('\n')[1]], [2, 'usage: tessera users list [--disabled] | create|show|disable|enable|unlock|delete|set-password|end-sessions USERNAME | import FILE [--format django|csv] [--dry-run]'], 'users list too answers a wrong flag with the usage')
  const bobId = (await ctx.connection.db.selectFrom('users').select('id').where('username', '=', 'bob').executeTakeFirstOrThrow()).id
  const liveSessions = (await ctx.connection.db.selectFrom('sessions').select('id').where('user_id', '=', bobId).where('revoked_at', 'is', null).execute()).map((s) => s.id)
  t.equal(liveSessions.length, 1, 'bob has a live session (the login above)')
  const deleted = await runCli(['users', 'delete', 'bob', '--json'], env)
  t.match(JSON.parse(deleted.stdout), { username: 'bob', deleted: true, sessions_ended: 1 })
  const endsAudited = await ctx.connection.db.selectFrom('audit_events').select(['session_id', 'actor']).where('type', '=', 'session.ended').where('user_id', '=', bobId).where('session_id', 'in', liveSessions).execute()
  t.equal(endsAudited.length, 1, 'one end, once')
  t.match(endsAudited, [{ session_id: liveSessions[0], actor: 'operator' }], 'its end audited before its row went with the user')
  const gone = await runCli(['users', 'show', 'bob'], env)
  t.equal(gone.code, 1)
  t.equal(gone.stderr, 'tessera: no user named bob\n')
  for (const action of ['enable', 'unlock', 'delete', 'set-password', 'end-sessions']) {
    t.equal((await runCli(['users', action, 'bob'], env, PASSWORD)).code, 1, `${action} of a missing user fails`)
  }
  const events = await ctx.connection.db.selectFrom('audit_events').select('type').where('username', '=', 'bob').where('actor', '=', 'operator').orderBy('id').execute()
  t.same(events.map((e) => e.type), ['user.created', 'user.disabled', 'user.enabled', 'password.changed', 'user.deleted'], 'the operator\'s actions on bob, each once; the second enable wrote nothing')
  const missing = await runCli(['users', 'show'], env)
  t.equal(missing.code, 2)
  t.match(missing.stderr, /^tessera: usage: tessera users list/)
  // A name no user can have is a usage error for every action, as for create, told before the database is reached (none is, here) or a password read.
  const nowhere = { ...env, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/nothing' }
  for (const action of ['create', 'show', 'disable', 'enable', 'unlock', 'delete', 'set-password', 'end-sessions']) {
    for (const name of ['', 'Bad Name!']) {
      const refused = await runCli(['users', action, name], nowhere, PASSWORD)
      t.same([refused.code, refused.stdout, refused.stderr], [2, '', 'tessera: username: must be 3 to 64 of a-z, 0-9, ".", "_", "-" (case-insensitive)\n'], `users ${action} ${JSON.stringify(name)}`)
    }
  }
})

t.test('users show reports the back-off failed logins made; users unlock lifts it, keeping the password and sessions, and no disabled user is enabled', async (t) => {
  const url = await createTestDatabase(t)
  // The server's settings and the CLI's: three failures back a name off for ten minutes.
  const backoff = { TESSERA_LOGIN_BACKOFF_AFTER: '3', TESSERA_LOGIN_BACKOFF_BASE: '10m' }
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url'), ...backoff }
  // A clock that runs: the CLI reads the time itself, and the block must be ahead of it as it is of the server's.
  const ctx = await buildTestApp(t, backoff, { connection: await testConnection(t, url), realClock: true })
  const { db } = ctx.connection
  for (const name of ['dan', 'eve']) t.equal((await runCli(['users', 'create', name], env, PASSWORD)).code, 0)
  const danTokens = await login(ctx.app, 'dan', PASSWORD)
  const { id: danId } = await db.selectFrom('users').select('id').where('username', '=', 'dan').executeTakeFirstOrThrow()

  t.match((await runCli(['users', 'show', 'dan'], env)).stdout, /\nlive_sessions: 1\nlogin_failures: 0\nbacked_off_until: -\n$/, 'no back-off')
  for (let i = 0; i < 3; i++) t.equal(await loginStatus(ctx.app, 'dan', 'a wrong password'), 400)
  t.equal(await loginStatus(ctx.app, 'dan', PASSWORD), 429, 'dan is backed off: the right password is refused')
  const { blocked_until: blockedUntil } = await db.selectFrom('login_throttle').select('blocked_until').where('username', '=', 'dan').executeTakeFirstOrThrow()
  const until = blockedUntil?.toISOString() ?? 'no block stored'
  const shown = await runCli(['users', 'show', 'dan'], env)
  t.equal(shown.code, 0, shown.stderr)
  t.match(shown.stdout, `\nlogin_failures: 3\nbacked_off_until: ${until}\n`, 'the streak and until when, in UTC as the other times')
  t.match(JSON.parse((await runCli(['users', 'show', 'dan', '--json'], env)).stdout), { username: 'dan', live_sessions: 1, login_failures: 3, backed_off_until: until })

  const unlocked = await runCli(['users', 'unlock', 'dan'], env)
  t.same([unlocked.code, unlocked.stdout, unlocked.stderr], [0, `unlocked dan: cleared 3 failed login(s); was backed off until ${until}\n`, ''])
  t.equal(await loginStatus(ctx.app, 'dan', PASSWORD), 200, 'the right password logs in at once')
  t.equal((await refresh(ctx.app, danTokens.refresh_token)).status, 200, 'the session from before is still live')
  t.match(JSON.parse((await runCli(['users', 'show', 'dan', '--json'], env)).stdout), { login_failures: 0, backed_off_until: null, live_sessions: 2 })
  t.equal((await runCli(['users', 'unlock', 'dan'], env)).stdout, 'dan was not backed off, no failed logins to clear\n', 'again: a success that says so')
  t.same(JSON.parse((await runCli(['users', 'unlock', 'dan', '--json'], env)).stdout), { id: danId, username: 'dan', failures_cleared: 0, was_backed_off_until: null, disabled: false })

  t.equal((await runCli(['users', 'disable', 'eve'], env)).code, 0)
  for (let i = 0; i < 3; i++) t.equal(await loginStatus(ctx.app, 'eve', PASSWORD), 400, 'disabled: refused, and counted')
  t.equal(await loginStatus(ctx.app, 'eve', PASSWORD), 429)
  const eve = await runCli(['users', 'unlock', 'eve', '--json'], env)
  t.equal(eve.code, 0, eve.stderr)
  t.match(JSON.parse(eve.stdout), { username: 'eve', failures_cleared: 3, was_backed_off_until: /^\d{4}-\d\d-\d\dT[\d:.]+Z$/, disabled: true })
  t.equal(await loginStatus(ctx.app, 'eve', PASSWORD), 400, 'refused as a disabled user, no longer backed off')
  t.equal((await runCli(['users', 'unlock', 'eve'], env)).stdout, 'unlocked eve: cleared 1 failed login(s); was not backed off; still disabled (tessera users enable eve lets them log in)\n',
    'that refusal counted again; a streak short of a block is cleared too')
  t.match(JSON.parse((await runCli(['users', 'show', 'eve', '--json'], env)).stdout), { disabled_at: /^\d{4}-/ }, 'still disabled')

  const nobody = await runCli(['users', 'unlock', 'nobody'], env)
  t.same([nobody.code, nobody.stdout, nobody.stderr], [1, '', 'tessera: no user named nobody\n'])
  const events = await db.selectFrom('audit_events').select(['username', 'actor', 'user_agent', 'detail']).where('type', '=', 'user.unlocked').orderBy('id').execute()
  t.match(events, [
    { username: 'dan', actor: 'operator', user_agent: 'tessera-cli', detail: { failures: 3, backed_off_until: until } },
    { username: 'eve', actor: 'operator', detail: { failures: 3 } },
    { username: 'eve', actor: 'operator', detail: { failures: 1, backed_off_until: null } }
  ], 'one row per unlock that cleared a streak, none for those that had nothing to clear')
  t.equal(events.length, 3)
  t.match((await runCli(['users', '--help'], {})).stdout, /users unlock USERNAME/, 'listed in the help')
})

// Runs the CLI on a pseudo-terminal (Python's pty, as an operator's shell would give it one), types KEYS once the
// prompt is up (or it has exited without one), and prints what the terminal showed then the exit status (killing it if it hangs).
const AT_A_TERMINAL = `
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen = b''
def read_until(done, limit):
    global seen
    end = time.time() + limit
    while not done() and time.time() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen += chunk
read_until(lambda: b'assword: ' in seen, 30)
# Typed only at a prompt: typed after an exit without one, the terminal would echo them.
if b'assword: ' in seen:
    os.write(fd, os.environ['KEYS'].encode())
read_until(lambda: False, 30)
for _ in range(100):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.stdout.write(seen.decode() + '\\nexit ' + str(os.waitstatus_to_exitcode(status)))
        sys.exit(0)
    time.sleep(0.1)
os.kill(pid, 9)
sys.stdout.write(seen.decode() + '\\nstill running after its input: killed')
`
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

t.test('at a terminal: the password is not echoed; Ctrl-D or Ctrl-C at the prompt fails, never exits 0 having done nothing; a name refused is told before the prompt', async (t) => {
  const url = await createTestDatabase(t)
  const env = { PATH: process.env.PATH ?? '', DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const atTerminal = async (args: string[], keys: string): Promise<string> => (await runProcess(PYTHON, ['-c', AT_A_TERMINAL, process.execPath, CLI_ENTRY, 'users', ...args], { env: { ...env, KEYS: keys } })).stdout
  const typed = async (username: string, keys: string): Promise<string> => await atTerminal(['create', username], keys)
  const answered = await typed('tty-kim', `${PASSWORD}\r`)
  t.match(answered, /^Password: \r\ncreated user tty-kim \([0-9a-f-]{36}\)\r\n\nexit 0$/, 'created, and the terminal never showed the password')
  t.equal(await typed('tty-lee', '\x04'), 'Password: \r\ntessera: no password given: the input ended at the prompt; nothing was changed\r\n\nexit 1')
  t.equal(await typed('tty-lee', 'half typed\x03'), 'Password: \r\ntessera: interrupted at the password prompt; nothing was changed\r\n\nexit 130', 'the status of a command Ctrl-C ended')
  // A name the database refuses is told before the prompt: no one types a password only to be told the name is wrong.
  t.equal(await typed('tty-kim', `${PASSWORD}\r`), 'tessera: username: tty-kim is already taken\r\n\nexit 1', 'create of a taken name: no prompt')
  t.equal(await atTerminal(['set-password', 'tty-nobody'], `${PASSWORD}\r`), 'tessera: no user named tty-nobody\r\n\nexit 1', 'set-password of no user: no prompt')
  t.equal(await atTerminal(['set-password', 'tty-kim'], `${PASSWORD}\r`), 'New password: \r\nset the password of tty-kim; ended 0 session(s)\r\n\nexit 0', 'and of a user, the prompt as before')
  const users = await runCli(['users', 'list', '--json'], env)
  t.same(JSON.parse(users.stdout).map((u: { username: string }) => u.username), ['tty-kim'], 'only the answered prompt made a user')
})

t.test('keys: a flag of another keys action is a usage error, before anything runs', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  await buildTestApp(t, {}, { connection: await testConnection(t, url) })
  const before = (await runCli(['keys', 'list', '--json'], env)).stdout
  const cases: Array<[string[], string]> = [
    [['keys', 'rotate', '--new-kek-file', 'new.kek'], 'new-kek-file'],
    [['keys', 'list', '--now'], 'now'],
    [['keys', 'revoke', 'some-kid', '--now'], 'now'],
    [['keys', 'rewrap', '--new-kek-file', '/nonexistent-kek', '--now'], 'now']
  ]
  for (const [args, flag] of cases) {
    const refused = await runCli(args, env)
    t.same([refused.code, refused.stderr], [2, `tessera: --${flag} is not a flag of keys ${args[1] ?? ''}\nusage: tessera keys list | rotate [--now] | revoke KID | rewrap --new-kek-file FILE\n`], args.join(' '))
  }
  t.equal((await runCli(['keys', 'list', '--json'], env)).stdout, before, 'no key made or changed')
})

t.test('keys revoke takes a kid that begins with "-" as the kid, never as options', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  // base64url kids start with "-" one time in 64; "-h…" would read as --help.
  for (const kid of ['-hAbc_d', '--json-like']) {
    const plain = await runCli(['keys', 'revoke', kid], env)
    t.equal(plain.code, 1, `${kid}: looked up, not parsed as flags (${plain.stderr})`)
    t.equal(plain.stderr, `tessera: no signing key has kid ${kid}\n`)
    const json = await runCli(['keys', 'revoke', kid, '--json'], env)
    t.match(json.stderr, `no signing key has kid ${kid}`, `${kid}: --json after it is still an option`)
  }
  const separated = await runCli(['keys', 'revoke', '--', '-hAbc_d'], env)
  t.equal(separated.stderr, 'tessera: no signing key has kid -hAbc_d\n', 'an explicit -- works too')
  t.equal((await runCli(['keys', 'revoke'], env)).code, 2, 'no kid is a usage error')
  // No 43-character thumbprint is --help or -h: those alone are asking how revoke works, before running it for real.
  for (const help of ['--help', '-h']) {
    const usage = await runCli(['keys', 'revoke', help], env)
    t.same([usage.code, usage.stderr], [0, ''], `keys revoke ${help}`)
    t.match(usage.stdout, /^usage: tessera <command> \[--json\]\n\n {2}keys list /, `keys revoke ${help}: the keys usage`)
  }
})

t.test('keys rotate --now and keys revoke say when the pending key they make sign was published less than the lead ago', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_KEY_PUBLISH_LEAD: '10m' }
  const { db } = await testConnection(t, url)
  const json = async (...args: string[]): Promise<Record<string, unknown>> => {
    const res = await runCli([...args, '--json'], env)
    if (res.code !== 0) throw new Error(`tessera ${args.join(' ')} exited ${String(res.code)}: ${res.stderr}`)
    return JSON.parse(res.stdout) as Record<string, unknown>
  }
  const first = await json('keys', 'rotate', '--now')
  t.equal(first.published_for_s, 0, 'a key made by --now was in no JWKS before it signed')

  // A pending key made moments ago (by keys rotate here; a scheduled rotation makes its own a lead before its turn):
  // verifiers that cached the JWKS before it was made do not have it, as with a new key.
  const young = String((await json('keys', 'rotate')).created)
  const promoted = await runCli(['keys', 'rotate', '--now'], env)
  t.equal(promoted.code, 0, promoted.stderr)
  t.match(promoted.stdout, new RegExp(`^key ${young} signs now \\(it was the pending next key, but published only [0-9] s ago, under TESSERA_KEY_PUBLISH_LEAD's 600 s: ` +
    'a verifier whose cached JWKS predates it meets an unknown kid, as with a new key\\); '))

  // One that waited out the lead is in every verifier's copy: no warning.
  const waited = String((await json('keys', 'rotate')).created)
  await db.updateTable('signing_keys').set({ published_at: new Date(Date.now() - 700_000) }).where('kid', '=', waited).execute()
  const old = await json('keys', 'rotate', '--now')
  t.equal(old.promoted, waited)
  t.ok((old.published_for_s as number) >= 700, `published for the lead and more (${String(old.published_for_s)} s)`)
  const oldText = await runCli(['keys', 'rotate'], env)
  const pending = String(/^created key (\S+):/.exec(oldText.stdout)?.[1])
  await db.updateTable('signing_keys').set({ published_at: new Date(Date.now() - 700_000) }).where('kid', '=', pending).execute()
  t.match((await runCli(['keys', 'rotate', '--now'], env)).stdout, new RegExp(`^key ${pending} signs now \\(it was the pending next key\\); `))

  // keys revoke of the signer promotes the pending key: the same warning when it is young.
  const signer = pending
  const next = String((await json('keys', 'rotate')).created)
  const revoked = await runCli(['keys', 'revoke', signer], env)
  t.equal(revoked.code, 0, revoked.stderr)
  t.match(revoked.stdout, new RegExp(`; key ${next} signs now \\(it was the pending next key, but published only [0-9] s ago, under TESSERA_KEY_PUBLISH_LEAD's 600 s: `))
  const replaced = await json('keys', 'revoke', next)
  t.match(replaced, { was: 'current', promoted: String, published_for_s: 0 }, 'with none pending, a new key signs, in no JWKS before')
})

t.test('text from an import file or the command line never drives the terminal: control characters and bidi overrides are shown escaped', async (t) => {
  const url = await createTestDatabase(t)
  await buildTestApp(t, {}, { connection: await testConnection(t, url) })
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-cli-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const file = path.join(dir, 'users.csv')
  await fs.writeFile(file, 'username,password_hash,disabled\n"\u001b]0;pwned\u0007\u001b[2Jevil\u202e",x,false\n')
  const imported = await runCli(['users', 'import', file, '--dry-run'], { DATABASE_URL: url })
  t.equal(imported.code, 0, imported.stderr)
  t.notOk(['\u001b', '\u0007', '\u202e'].some((c) => imported.stdout.includes(c)), 'no raw escape, bell or override reaches the terminal')
  t.match(imported.stdout, '(\\u001b]0;pwned\\u0007\\u001b[2Jevil\\u202e)', 'each shown as its escape')
  // A username or client id like this one is refused unread (none can have it); a flag no command takes is named in the failure.
  const shown = await runCli(['clients', 'show', 'tessera', '--x\u001b[31my'], { DATABASE_URL: url })
  t.equal(shown.code, 2)
  t.notOk(shown.stderr.includes('\u001b'), 'nor in a failure\'s line')
  t.match(shown.stderr, 'x\\u001b[31my')
})

import t from 'tap'
import { randomBytes } from 'node:crypto'
import { buildTestApp, login, refresh } from './helpers/app.js'
import { createTestDatabase, testConnection } from './helpers/db.js'
import { runCli } from './helpers/server.js'

const PASSWORD = 'correct horse battery'

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
  t.equal(again.stderr, 'tessera: username: is already taken\n', 'one line, no stack')
  const weak = await runCli(['users', 'create', 'lee'], env, 'short')
  t.equal(weak.code, 1)
  t.match(weak.stderr, /^tessera: password: must be 8 to 256 characters\n$/)

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
  t.match(audit.map((e) => e.type), ['user.created', 'login.succeeded', 'user.disabled', 'session.ended'])
})

t.test('keys list and usage errors', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  await buildTestApp(t, {}, { connection: await testConnection(t, url) })
  const keys = await runCli(['keys', 'list', '--json'], env)
  t.equal(keys.code, 0, keys.stderr)
  t.match(JSON.parse(keys.stdout), [{ state: 'current', bits: 2048, private_half: true }])
  const cleanup = await runCli(['cleanup', '--json'], env)
  t.equal(cleanup.code, 0, cleanup.stderr)
  t.same(JSON.parse(cleanup.stdout), { ran: true, sessions: 0, refresh_tokens: 0, audit_events: 0 })
  const usage = await runCli(['frobnicate'], env)
  t.equal(usage.code, 2)
  t.match(usage.stderr, /^usage: tessera/)
  const badEnv = await runCli(['keys', 'list'], { ...env, TESSERA_KEY_BITS: '1000' })
  t.equal(badEnv.code, 1)
  t.equal(badEnv.stderr, 'tessera: TESSERA_KEY_BITS="1000" is invalid: expected one of 2048, 3072, 4096\n')
})

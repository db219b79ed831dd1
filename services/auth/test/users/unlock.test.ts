/**
 * `tessera users unlock` and the back-off `users show` reports
 * (users/unlock.ts; passwords/login-throttle.ts, loginBackoff) against a
 * real Postgres, the back-off made by real failed logins through the app:
 * the unlock lets the user try again at once, and changes nothing else.
 * The CLI's own lines: test/e2e/cli.test.ts.
 */
import t from 'tap'
import { backoffPolicy, loginBackoff } from '../../src/passwords/login-throttle.js'
import { disableUser } from '../../src/users/disable.js'
import { unlockUser } from '../../src/users/unlock.js'
import { buildTestApp, login, refresh, signUp, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'
/** Three failures back a name off for 60 s (the test clock is frozen, so the block holds); a streak ends 120 s after its block. */
const BACKOFF = { TESSERA_LOGIN_BACKOFF_AFTER: '3', TESSERA_LOGIN_BACKOFF_BASE: '60s', TESSERA_LOGIN_BACKOFF_MAX: '120s' }

async function attempt (app: TestApp['app'], username: string, password: string): Promise<{ status: number, error: unknown }> {
  const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username, password } })
  return { status: res.statusCode, error: res.json().error }
}

async function unlockEvents (test: TestApp, username: string): Promise<Array<{ actor: string | null, user_id: string | null, detail: unknown }>> {
  return await test.connection.db.selectFrom('audit_events').select(['actor', 'user_id', 'detail']).where('type', '=', 'user.unlocked').where('username', '=', username).orderBy('id').execute()
}

t.test('unlock lifts a back-off made by failed logins: the right password logs in at once, and the password and sessions stay', async (t) => {
  const test = await buildTestApp(t, BACKOFF)
  const { app, config, deps: { db, clock } } = test
  const policy = backoffPolicy(config)
  const bob = await signUp(app, 'bob', PASSWORD)
  const tokens = await login(app, 'bob', PASSWORD)
  t.same(await loginBackoff(db, 'bob', clock(), policy), { failures: 0, backedOffUntil: null }, 'no streak yet')

  for (let i = 0; i < 3; i++) t.same(await attempt(app, 'Bob', `wrong password ${i}`), { status: 400, error: 'invalid_grant' })
  t.same(await attempt(app, 'bob', PASSWORD), { status: 429, error: 'temporarily_unavailable' }, 'backed off: the right password is refused too')
  const until = new Date(clock().getTime() + 60_000)
  t.same(await loginBackoff(db, 'bob', clock(), policy), { failures: 3, backedOffUntil: until }, 'the streak and the end of its block, as stored by the logins')

  const unlocked = await unlockUser(db, 'BOB', clock, policy, { actor: 'operator', userAgent: 'tessera-cli' })
  t.same(unlocked, { id: bob.id, username: 'bob', cleared: { failures: 3, backedOffUntil: until }, disabled: false })
  t.same(await loginBackoff(db, 'bob', clock(), policy), { failures: 0, backedOffUntil: null }, 'nothing left to show')
  t.same(await attempt(app, 'bob', PASSWORD), { status: 200, error: undefined }, 'the right password logs in at once, the clock not moved')
  t.equal((await refresh(app, tokens.refresh_token)).status, 200, 'the session from before the back-off still works')
  t.same(await unlockEvents(test, 'bob'), [{ actor: 'operator', user_id: bob.id, detail: { failures: 3, backed_off_until: until.toISOString() } }])

  t.same(await unlockUser(db, 'bob', clock, policy), { id: bob.id, username: 'bob', cleared: { failures: 0, backedOffUntil: null }, disabled: false }, 'a second unlock succeeds, with nothing cleared')
  t.equal((await unlockEvents(test, 'bob')).length, 1, 'and writes no audit row')
})

t.test('a streak short of a block is cleared too: the user gets every attempt back', async (t) => {
  const test = await buildTestApp(t, BACKOFF)
  const { app, config, deps: { db, clock } } = test
  await signUp(app, 'cara', PASSWORD)
  for (let i = 0; i < 2; i++) t.equal((await attempt(app, 'cara', 'wrong password here')).status, 400)
  t.same(await loginBackoff(db, 'cara', clock(), backoffPolicy(config)), { failures: 2, backedOffUntil: null }, 'failures, no block yet')
  t.match(await unlockUser(db, 'cara', clock, backoffPolicy(config)), { cleared: { failures: 2, backedOffUntil: null } })
  // Without the unlock the next wrong guess would be the third and back the name off.
  for (let i = 0; i < 2; i++) t.equal((await attempt(app, 'cara', 'wrong password here')).status, 400)
  t.equal((await attempt(app, 'cara', PASSWORD)).status, 200, 'two more failures did not reach the threshold')
  t.match(await unlockEvents(test, 'cara'), [{ detail: { failures: 2, backed_off_until: null } }])
})

t.test('a block that has ended shows its streak; a streak that has ended shows none, as the next failure counts from one', async (t) => {
  const test = await buildTestApp(t, BACKOFF)
  const { app, config, deps: { db, clock }, advance } = test
  const policy = backoffPolicy(config)
  await signUp(app, 'dora', PASSWORD)
  for (let i = 0; i < 3; i++) await attempt(app, 'dora', 'wrong password here')
  advance(61)
  t.same(await loginBackoff(db, 'dora', clock(), policy), { failures: 3, backedOffUntil: null }, 'no longer refused, but the next failure backs it off again for longer')
  advance(119)
  t.same(await loginBackoff(db, 'dora', clock(), policy), { failures: 3, backedOffUntil: null }, 'at exactly max after the block ended the streak still holds (the SQL\'s strict <)')
  advance(1)
  t.same(await loginBackoff(db, 'dora', clock(), policy), { failures: 0, backedOffUntil: null }, 'past it the streak has ended, its row not yet pruned')
  t.ok(await db.selectFrom('login_throttle').select('failures').where('username', '=', 'dora').executeTakeFirst(), 'the row is still stored')
  t.match(await unlockUser(db, 'dora', clock, policy), { cleared: { failures: 0, backedOffUntil: null } }, 'so an unlock has nothing to clear')
  t.same(await unlockEvents(test, 'dora'), [], 'and writes no audit row')

  // The login's own rule (SQL) on each side of that instant, for the same stored streak.
  const failuresAfterOneMore = async (): Promise<number> => {
    await attempt(app, 'dora', 'wrong password here')
    return (await db.selectFrom('login_throttle').select('failures').where('username', '=', 'dora').executeTakeFirstOrThrow()).failures
  }
  for (let i = 0; i < 3; i++) await attempt(app, 'dora', 'wrong password here')
  advance(60 + 120)
  t.equal(await failuresAfterOneMore(), 4, 'at exactly max after the block ended, the login counts on from the streak')
  // That fourth failure blocked the name for 60·2 s (the cap); its streak ends max after that block.
  advance(120 + 120)
  t.same(await loginBackoff(db, 'dora', clock(), policy), { failures: 4, backedOffUntil: null })
  advance(1)
  t.same(await loginBackoff(db, 'dora', clock(), policy), { failures: 0, backedOffUntil: null })
  t.equal(await failuresAfterOneMore(), 1, 'past it, the login counts from one, as shown')
})

t.test('an unlocked disabled user stays disabled: their logins are refused as before, but not backed off', async (t) => {
  const test = await buildTestApp(t, BACKOFF)
  const { app, config, deps: { db, clock } } = test
  const erin = await signUp(app, 'erin', PASSWORD)
  await disableUser(db, 'erin', clock)
  for (let i = 0; i < 3; i++) t.same(await attempt(app, 'erin', PASSWORD), { status: 400, error: 'invalid_grant' })
  t.equal((await attempt(app, 'erin', PASSWORD)).status, 429, 'the disabled user\'s app backed the name off')

  t.match(await unlockUser(db, 'erin', clock, backoffPolicy(config)), { id: erin.id, cleared: { failures: 3 }, disabled: true })
  t.same(await attempt(app, 'erin', PASSWORD), { status: 400, error: 'invalid_grant' }, 'still refused, as a disabled user, not backed off')
  const user = await db.selectFrom('users').select('disabled_at').where('id', '=', erin.id).executeTakeFirstOrThrow()
  t.not(user.disabled_at, null, 'still disabled')
})

t.test('no user: undefined, and the back-off of a name no user has is left alone', async (t) => {
  const { app, config, deps: { db, clock } } = await buildTestApp(t, BACKOFF)
  const policy = backoffPolicy(config)
  for (let i = 0; i < 3; i++) await attempt(app, 'nobody', 'wrong password here')
  t.equal(await unlockUser(db, 'nobody', clock, policy), undefined, 'no such user')
  t.equal(await unlockUser(db, 'Not A Name!', clock, policy), undefined, 'a name no user can have')
  t.match(await loginBackoff(db, 'nobody', clock(), policy), { failures: 3, backedOffUntil: Date }, 'the guessing at that name is still backed off')
  t.same(await db.selectFrom('audit_events').select('type').where('type', '=', 'user.unlocked').execute(), [])
})

/**
 * The operator's user commands (users/manage.ts, behind `tessera users …`)
 * in process, against a real Postgres, beside the CLI's e2e tests of the
 * same commands through dist/: what each changes, and what it leaves.
 */
import t from 'tap'
import { disableUser } from '../../src/users/disable.js'
import { deleteUser, endUserSessions, setPassword, showUser } from '../../src/users/manage.js'
import { PasswordHasher } from '../../src/passwords/hasher.js'
import { buildTestApp, login, refresh, signUp, TEST_ARGON2 } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'

t.test('show: a user by name in any case, with their live sessions; none for a name no user has (list: list.test.ts)', async (t) => {
  const { app, connection: { db } } = await buildTestApp(t)
  await signUp(app, 'bob', PASSWORD)
  await signUp(app, 'amy', PASSWORD)
  await login(app, 'amy', PASSWORD)
  await login(app, 'amy', PASSWORD)
  await disableUser(db, 'bob', () => new Date())
  const now = new Date()
  t.match(await showUser(db, 'bob', now), { username: 'bob', liveSessions: 0, disabledAt: Date }, 'a disabled one')
  t.match(await showUser(db, 'AMY', now), { username: 'amy', liveSessions: 2, disabledAt: null }, 'a name in any case')
  t.equal(await showUser(db, 'nobody', now), undefined, 'no such user')
  t.equal(await showUser(db, 'not a name!', now), undefined, 'a name no user can have')
})

t.test('end-sessions and set-password end every session; delete takes the user and audits each session it ends', async (t) => {
  // The hasher the CLI makes (cli/users.ts), at the test's argon2 cost.
  const hasher = new PasswordHasher({ concurrency: 1, depth: 4, params: TEST_ARGON2 })
  const { app, connection: { db } } = await buildTestApp(t, {}, { hasher })
  const cleo = await signUp(app, 'cleo', PASSWORD)
  const first = await login(app, 'cleo', PASSWORD)
  const ended = await endUserSessions(db, 'cleo', () => new Date())
  t.match(ended, { username: 'cleo', sessionsEnded: 1 })
  t.equal((await refresh(app, first.refresh_token)).status, 400, 'its refresh token stops working at once')

  const second = await login(app, 'cleo', PASSWORD)
  const changed = await setPassword(db, hasher, { username: 'cleo', password: 'another long passphrase', clock: () => new Date() })
  t.match(changed, { username: 'cleo', sessionsEnded: 1 })
  t.equal((await refresh(app, second.refresh_token)).status, 400, 'a new password ends the sessions')
  const oldPassword = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'cleo', password: PASSWORD } })
  t.equal(oldPassword.statusCode, 400, 'the old password no longer logs in')
  await login(app, 'cleo', 'another long passphrase')

  const deleted = await deleteUser(db, 'cleo', () => new Date())
  t.match(deleted, { username: 'cleo', sessionsEnded: 1 })
  t.equal(await showUser(db, 'cleo', new Date()), undefined, 'gone')
  const audit = await db.selectFrom('audit_events').select('type').where('user_id', '=', cleo.id).orderBy('id').execute()
  t.same(audit.map((e) => e.type).filter((type) => type.startsWith('session.') || type.startsWith('user.') || type === 'password.changed'),
    ['user.created', 'session.ended', 'password.changed', 'session.ended', 'session.ended', 'user.deleted'], 'each end and the delete audited, and kept')

  for (const [name, run] of [
    ['delete', async (u: string) => await deleteUser(db, u, () => new Date())],
    ['end-sessions', async (u: string) => await endUserSessions(db, u, () => new Date())],
    ['set-password', async (u: string) => await setPassword(db, hasher, { username: u, password: 'another long passphrase', clock: () => new Date() })]
  ] as const) {
    t.equal(await run('cleo'), undefined, `${name}: no such user`)
    t.equal(await run('Not A Name!'), undefined, `${name}: a name no user can have`)
  }
})

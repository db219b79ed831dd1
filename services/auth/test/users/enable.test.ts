/**
 * `tessera users enable` (users/manage.ts, enableUser) against a real
 * Postgres: the user it lets back in can log in at once, whatever their
 * client tried while they were disabled.
 */
import t from 'tap'
import { disableUser } from '../../src/users/disable.js'
import { enableUser } from '../../src/users/manage.js'
import { buildTestApp, signUp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'

t.test('enable lifts the back-off that logins met while the user was disabled', async (t) => {
  // The frozen clock of the test app: the block set below is still in force at the last login.
  const { app, connection: { db } } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '2' })
  const attempt = async (): Promise<{ status: number, error: unknown }> => {
    const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'dana', password: PASSWORD } })
    return { status: res.statusCode, error: res.json().error }
  }
  await signUp(app, 'dana', PASSWORD)
  await disableUser(db, 'dana', () => new Date())
  // The user's app goes on logging in with the right password while the account is disabled.
  t.same([await attempt(), await attempt()], [{ status: 400, error: 'invalid_grant' }, { status: 400, error: 'invalid_grant' }])
  t.same(await attempt(), { status: 429, error: 'temporarily_unavailable' }, 'those failures backed the name off')

  const enabled = await enableUser(db, 'dana')
  t.match(enabled, { username: 'dana', wasDisabled: true })
  t.equal((await attempt()).status, 200, 'once enabled, the user logs in at once, not after the back-off the disabled account earned')
  const audit = await db.selectFrom('audit_events').select('type').where('username', '=', 'dana').orderBy('id').execute()
  t.same(audit.map((e) => e.type).filter((type) => type !== 'login.failed' && type !== 'login.backed_off'),
    ['user.created', 'user.disabled', 'user.enabled', 'login.succeeded'])
})

t.test('enable of a user who is not disabled leaves their back-off alone', async (t) => {
  const { app, connection: { db } } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '2' })
  await signUp(app, 'erin', PASSWORD)
  for (let i = 0; i < 2; i++) await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'erin', password: 'wrong password here' } })
  t.match(await enableUser(db, 'erin'), { wasDisabled: false })
  const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'erin', password: PASSWORD } })
  t.equal(res.statusCode, 429, 'wrong guesses at an enabled account are not forgiven by a no-op enable')
})

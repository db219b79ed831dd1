/**
 * SimpleJWT answers every failed login and every spent refresh token the
 * same way; the log line says which case it was, so an operator can tell a
 * wrong password from an unknown name without the audit table. What DRF
 * itself answers is compared in test/e2e/simplejwt.test.ts.
 */
import t from 'tap'
import { buildTestApp, signUp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'
const NO_ACCOUNT = { detail: 'No active account found with the given credentials' }

function refusalLines (logs: string): Array<Record<string, unknown>> {
  return logs.split('\n').filter((l) => l.includes('"simplejwt refusal"')).map((l) => JSON.parse(l) as Record<string, unknown>)
}

t.test('a refused SimpleJWT login logs why it was refused, and answers DRF\'s one message', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const wrong = await ctx.app.inject({ method: 'POST', url: '/api/token/', payload: { username: 'alice', password: 'not the password' } })
  const unknown = await ctx.app.inject({ method: 'POST', url: '/api/token/', payload: { username: 'nobody', password: PASSWORD } })
  t.equal(wrong.statusCode, 401)
  t.same(wrong.json(), NO_ACCOUNT)
  t.same(unknown.json(), NO_ACCOUNT, 'the answer does not tell the two apart')
  const lines = refusalLines(ctx.logs())
  t.same(lines.map((l) => [l.status, l.detail]), [[401, 'wrong_password'], [401, 'unknown_user']], 'the audit trail\'s reasons, word for word')
  t.notOk(ctx.logs().includes('not the password'), 'the password stays out of the log')
})

t.test('a spent refresh token on SimpleJWT\'s verify logs why it is blacklisted', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const login = await ctx.app.inject({ method: 'POST', url: '/api/token/', payload: { username: 'alice', password: PASSWORD } })
  const { refresh } = login.json<{ refresh: string }>()
  await ctx.app.inject({ method: 'POST', url: '/api/token/blacklist/', payload: { refresh } })
  const verify = await ctx.app.inject({ method: 'POST', url: '/api/token/verify/', payload: { token: refresh } })
  t.equal(verify.statusCode, 400)
  t.same(verify.json(), { non_field_errors: ['Token is blacklisted'] })
  t.same(refusalLines(ctx.logs()).map((l) => l.detail), ['a refresh token used past its grace window, or of an ended session'])
})

t.test('the pairs\' members come in SimpleJWT\'s order: refresh first from a login, access first from a refresh', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const login = await ctx.app.inject({ method: 'POST', url: '/api/token/', payload: { username: 'alice', password: PASSWORD } })
  t.same(Object.keys(JSON.parse(login.body) as object), ['refresh', 'access'], 'TokenObtainPairSerializer\'s order')
  const { refresh } = login.json<{ refresh: string }>()
  const refreshed = await ctx.app.inject({ method: 'POST', url: '/api/token/refresh/', payload: { refresh } })
  t.same(Object.keys(JSON.parse(refreshed.body) as object), ['access', 'refresh'], 'TokenRefreshSerializer\'s order, with rotation')
})

/**
 * Client authentication on the refresh grant, judged inside the one SQL call
 * (tessera_refresh_grant, migrations/0005_refresh_grant.js) for a token that is
 * otherwise good: every failure is the same 401 invalid_client with its reason
 * in the audit trail, a refused attempt leaves the token usable, and a
 * rotated-out secret works only while its grace lasts.
 */
import t from 'tap'
import { buildTestApp, signUp, type TestApp } from '../helpers/app.js'
import { createClient } from '../../src/clients/register.js'
import { rotateClientSecret } from '../../src/clients/rotate-secret.js'
import { disableClient } from '../../src/clients/end.js'

const PASSWORD = 'correct horse battery'
const OPERATOR = { actor: 'operator' }

type Body = Record<string, unknown>
interface Reply { status: number, body: Body, headers: Record<string, unknown> }

const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`

async function token (ctx: TestApp, payload: Body, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload, headers })
  return { status: res.statusCode, body: res.json(), headers: res.headers }
}

async function failureReasons (ctx: TestApp): Promise<unknown[]> {
  return (await ctx.deps.db.selectFrom('audit_events').select('detail').where('type', '=', 'client.authentication_failed').orderBy('id').execute()).map((e) => e.detail)
}

async function refreshTokenOf (ctx: TestApp, username: string, client: Record<string, string>, headers: Record<string, string> = {}): Promise<string> {
  await signUp(ctx.app, username, PASSWORD)
  const pair = await token(ctx, { grant_type: 'password', username, password: PASSWORD, ...client }, headers)
  if (pair.status !== 200) throw new Error(`login failed: ${JSON.stringify(pair.body)}`)
  return pair.body.refresh_token as string
}

t.test('a good token with a failing client: 401 invalid_client, the reason audited, the token still usable', async (t) => {
  const ctx = await buildTestApp(t)
  const secret = (await createClient(ctx.deps.db, { clientId: 'backend', confidential: true, grants: ['password', 'refresh_token'], scopes: ['read'], resources: [] }, ctx.deps.clock(), OPERATOR)).secret ?? ''
  await createClient(ctx.deps.db, { clientId: 'spa', confidential: false, grants: ['password', 'refresh_token'], scopes: ['read'], resources: [] }, ctx.deps.clock(), OPERATOR)
  const confidential = await refreshTokenOf(ctx, 'ada', {}, { authorization: basic('backend', secret) })
  const publicOne = await refreshTokenOf(ctx, 'bea1', { client_id: 'spa' })

  const cases: Array<[string, string, Body, Record<string, string>, string]> = [
    ['wrong secret', confidential, {}, { authorization: basic('backend', 'not-the-secret') }, 'client_secret_basic'],
    ['wrong secret', confidential, { client_id: 'backend', client_secret: 'not-the-secret' }, {}, 'client_secret_post'],
    ['no client authentication', confidential, { client_id: 'backend' }, {}, 'none'],
    ['secret sent to a public client', publicOne, { client_id: 'spa', client_secret: 'anything' }, {}, 'client_secret_post'],
    ['unknown client', publicOne, { client_id: 'nobody' }, {}, 'none']
  ]
  for (const [reason, refreshToken, body, headers, method] of cases) {
    const before = (await failureReasons(ctx)).length
    const res = await token(ctx, { grant_type: 'refresh_token', refresh_token: refreshToken, ...body }, headers)
    t.same({ status: res.status, body: res.body }, { status: 401, body: { error: 'invalid_client', error_description: 'client authentication failed' } }, reason)
    t.equal(res.headers['www-authenticate'], method === 'client_secret_basic' ? 'Basic realm="tessera", charset="UTF-8"' : undefined, `${reason}: the Basic challenge only for Basic`)
    const reasons = await failureReasons(ctx)
    t.equal(reasons.length, before + 1, `${reason}: one audit row`)
    t.same(reasons.at(-1), { client_id: body.client_id ?? 'backend', reason, method }, `${reason}: audited with its reason`)
  }
  t.equal((await token(ctx, { grant_type: 'refresh_token', refresh_token: confidential }, { authorization: basic('backend', secret) })).status, 200, 'the confidential token was not used up')
  t.equal((await token(ctx, { grant_type: 'refresh_token', refresh_token: publicOne, client_id: 'spa' })).status, 200, 'nor the public one')
})

t.test('a rotated-out secret refreshes during its grace only; a disabled client or one without the grant is refused', async (t) => {
  const ctx = await buildTestApp(t)
  const old = (await createClient(ctx.deps.db, { clientId: 'svc', confidential: true, grants: ['password', 'refresh_token'], scopes: ['read'], resources: [] }, ctx.deps.clock(), OPERATOR)).secret ?? ''
  let refreshToken = await refreshTokenOf(ctx, 'cyd', {}, { authorization: basic('svc', old) })
  const rotated = await rotateClientSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 60, clock: ctx.deps.clock }, OPERATOR)
  if (rotated.kind !== 'rotated') throw new Error('not rotated')
  const refresh = async (secret: string): Promise<Reply> => await token(ctx, { grant_type: 'refresh_token', refresh_token: refreshToken }, { authorization: basic('svc', secret) })
  const inGrace = await refresh(old)
  t.equal(inGrace.status, 200, 'the previous secret inside its grace')
  refreshToken = inGrace.body.refresh_token as string
  ctx.advance(61)
  t.equal((await refresh(old)).status, 401, 'after the grace, refused')
  t.same((await failureReasons(ctx)).at(-1), { client_id: 'svc', reason: 'wrong secret', method: 'client_secret_basic' })
  const current = await refresh(rotated.secret)
  t.equal(current.status, 200, 'the current secret')
  refreshToken = current.body.refresh_token as string

  await ctx.deps.db.updateTable('clients').set({ grants: ['password'] }).where('client_id', '=', 'svc').execute()
  const noGrant = await refresh(rotated.secret)
  t.same({ status: noGrant.status, error: noGrant.body.error }, { status: 400, error: 'unauthorized_client' }, 'a client not registered for refresh_token')
  await ctx.deps.db.updateTable('clients').set({ grants: ['password', 'refresh_token'] }).where('client_id', '=', 'svc').execute()
  await ctx.deps.db.updateTable('clients').set({ disabled_at: ctx.deps.clock() }).where('client_id', '=', 'svc').execute()
  t.equal((await refresh(rotated.secret)).status, 401, 'a disabled client')
  t.same((await failureReasons(ctx)).at(-1), { client_id: 'svc', reason: 'client disabled', method: 'client_secret_basic' })
  t.same(await disableClient(ctx.deps.db, 'svc', ctx.deps.clock, OPERATOR), { changed: false, sessionsEnded: 1 }, 'the session was still live: the refusals wrote nothing')
})

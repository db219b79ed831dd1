/**
 * `clients enable` (enableClient) against the real Postgres and the real
 * token endpoint: it clears the disable and nothing else. The secrets stay
 * as they were, both of them in a grace; the sessions the disable ended stay
 * ended; an enable that changes nothing writes nothing.
 */
import t from 'tap'
import { buildTestApp, login, signUp, type TestApp } from '../helpers/app.js'
import { createClient } from '../../src/clients/register.js'
import { rotateClientSecret } from '../../src/clients/rotate-secret.js'
import { disableClient } from '../../src/clients/end.js'
import { enableClient } from '../../src/clients/enable.js'

const OPERATOR = { actor: 'operator' }

const token = async (ctx: TestApp, payload: Record<string, string>): Promise<{ status: number, error: unknown }> => {
  const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload })
  return { status: res.statusCode, error: res.json().error }
}

const enables = async (ctx: TestApp): Promise<Array<{ actor: string | null, detail: Record<string, unknown> }>> =>
  await ctx.deps.db.selectFrom('audit_events').select(['actor', 'detail']).where('type', '=', 'client.enabled').orderBy('id').execute()

t.test('enable clears the disable: both secrets work as before, audited once', async (t) => {
  const ctx = await buildTestApp(t)
  const created = await createClient(ctx.deps.db, { clientId: 'svc', confidential: true, grants: ['client_credentials'], scopes: ['notes:read'], resources: [] }, ctx.deps.clock(), OPERATOR)
  const rotated = await rotateClientSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 3600, clock: ctx.deps.clock }, OPERATOR)
  if (created.secret === undefined || rotated.kind !== 'rotated') throw new Error('setup')
  const cc = async (secret: string): Promise<number> => (await token(ctx, { grant_type: 'client_credentials', client_id: 'svc', client_secret: secret })).status
  const stored = async (): Promise<unknown> => await ctx.deps.db.selectFrom('clients').select(['secret_digest', 'previous_secret_digest', 'previous_secret_expires_at', 'secret_rotated_at']).where('client_id', '=', 'svc').executeTakeFirstOrThrow()
  const secrets = await stored()

  t.match(await disableClient(ctx.deps.db, 'svc', ctx.deps.clock, OPERATOR), { changed: true })
  const { disabled_at: disabledAt } = await ctx.deps.db.selectFrom('clients').select('disabled_at').where('client_id', '=', 'svc').executeTakeFirstOrThrow()
  t.equal(await cc(rotated.secret), 401, 'disabled')
  t.same(await enableClient(ctx.deps.db, 'svc', OPERATOR), { changed: true, confidential: true })
  t.same(await stored(), secrets, 'the secrets, the old one\'s deadline and the rotation time are as they were')
  t.same([await cc(rotated.secret), await cc(created.secret)], [200, 200], 'the current secret and the old one in its grace both work again')
  t.equal((await ctx.deps.db.selectFrom('clients').select('disabled_at').where('client_id', '=', 'svc').executeTakeFirstOrThrow()).disabled_at, null)
  t.same(await enables(ctx), [{ actor: 'operator', detail: { client_id: 'svc', disabled_at: disabledAt?.toISOString() } }], 'audited with when it had been disabled')

  t.same(await enableClient(ctx.deps.db, 'svc', OPERATOR), { changed: false, confidential: true }, 'already enabled: nothing to do')
  t.equal((await enables(ctx)).length, 1, 'and nothing written')
  t.equal(await enableClient(ctx.deps.db, 'nobody', OPERATOR), undefined, 'an unknown client')
})

t.test('the default client enabled again: new logins work, the sessions its disable ended stay ended', async (t) => {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'erin', 'correct horse battery')
  const before = await login(ctx.app, 'erin', 'correct horse battery')
  t.same(await disableClient(ctx.deps.db, ctx.config.defaultClientId, ctx.deps.clock, OPERATOR), { changed: true, sessionsEnded: 1 })
  t.same(await token(ctx, { grant_type: 'password', username: 'erin', password: 'correct horse battery' }), { status: 401, error: 'invalid_client' })
  t.same(await enableClient(ctx.deps.db, ctx.config.defaultClientId, OPERATOR), { changed: true, confidential: false })
  t.equal((await token(ctx, { grant_type: 'password', username: 'erin', password: 'correct horse battery' })).status, 200, 'a login works again')
  t.same(await token(ctx, { grant_type: 'refresh_token', refresh_token: before.refresh_token }), { status: 400, error: 'invalid_grant' }, 'the ended session is not revived')
  const sessions = await ctx.deps.db.selectFrom('sessions').select(['revoke_reason']).orderBy('created_at').execute()
  t.same(sessions.map((s) => s.revoke_reason), ['client_disabled', null])
})

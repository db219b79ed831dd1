/**
 * authenticateClient against the real Postgres: the row comes back from one
 * fixed statement (CLIENT_READ_SQL), and the rotated-out secret's grace is
 * judged against the `now` it is given, to the millisecond, also for a row
 * kept in a worker's memory (clients/cache.ts).
 */
import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { authenticateClient, CLIENT_READ_SQL } from '../../src/clients/authenticate.js'
import { createClient } from '../../src/clients/register.js'
import { rotateClientSecret } from '../../src/clients/rotate-secret.js'
import { disableClient } from '../../src/clients/end.js'
import { OAuthError } from '../../src/errors.js'
import { ClientCache } from '../../src/clients/cache.js'

const OPERATOR = { actor: 'operator' }

for (const kept of [false, true]) {
  t.test(`the previous secret works until the instant its grace ends, judged at the given now${kept ? ', from memory' : ''}`, async (t) => {
    const ctx = await buildTestApp(t)
    const db = ctx.deps.db
    const clientCache = new ClientCache()
    const deps = { db, config: ctx.config, ...(kept ? { clientCache } : {}) }
    const created = await createClient(db, { clientId: 'svc', confidential: true, grants: ['client_credentials'], scopes: ['notes:read'], resources: ['urn:tessera:notes'] }, ctx.deps.clock(), OPERATOR)
    const rotatedAt = ctx.deps.clock()
    const rotated = await rotateClientSecret(db, { clientId: 'svc', graceSeconds: 60, clock: () => rotatedAt }, OPERATOR)
    if (created.secret === undefined || rotated.kind !== 'rotated') throw new Error('setup')
    const at = (ms: number): Date => new Date(rotatedAt.getTime() + ms)
    const authenticate = async (secret: string, now: Date): Promise<string> => {
      try {
        const client = await authenticateClient(deps, { credentials: { method: 'client_secret_basic', clientId: 'svc', secret }, now, context: {} })
        return `ok ${client.clientId} ${client.grants.join(',')} ${client.scopes.join(',')} ${client.resources.join(',')} ${String(client.confidential)}`
      } catch (err) {
        if (err instanceof OAuthError) return `${err.error} ${String(err.detail)}`
        throw err
      }
    }
    t.equal(await authenticate(created.secret, at(59_999)), 'ok svc client_credentials notes:read urn:tessera:notes true', 'the old secret a millisecond before the end')
    t.equal(await authenticate(created.secret, at(60_000)), 'invalid_client wrong secret', 'and not at the end')
    t.equal(await authenticate(rotated.secret, at(120_000)), 'ok svc client_credentials notes:read urn:tessera:notes true', 'the new one, after')
    t.equal(await authenticate(`${rotated.secret}x`, at(0)), 'invalid_client wrong secret')
    await disableClient(db, 'svc', () => at(1), OPERATOR)
    // The trigger's notification has no listener here: the test tells the cache, as the primary would.
    clientCache.changed('svc')
    t.equal(await authenticate(rotated.secret, at(2)), 'invalid_client client disabled')
    t.equal(await authenticateClient(deps, { credentials: { method: 'none', clientId: 'nobody' }, now: at(0), context: {} }).catch((err: OAuthError) => err.detail), 'unknown client')
    t.match(CLIENT_READ_SQL, /^select .* from clients where client_id = \$1$/, 'one fixed statement, nothing compiled per request')
  })
}

t.test('with a live feed the row is read once and served from memory until its change is heard', async (t) => {
  const ctx = await buildTestApp(t)
  const db = ctx.deps.db
  const clientCache = new ClientCache()
  clientCache.feed({ live: true, epoch: 1 })
  const deps = { db, config: ctx.config, clientCache }
  const created = await createClient(db, { clientId: 'svc', confidential: true, grants: ['client_credentials'], scopes: ['notes:read'], resources: [] }, ctx.deps.clock(), OPERATOR)
  if (created.secret === undefined) throw new Error('setup')
  const authenticate = async (): Promise<string> => await authenticateClient(deps, { credentials: { method: 'client_secret_basic', clientId: 'svc', secret: created.secret ?? '' }, now: ctx.deps.clock(), context: {} })
    .then((client) => `ok ${client.scopes.join(',')}`, (err: OAuthError) => `${err.error} ${String(err.detail)}`)
  t.equal(await authenticate(), 'ok notes:read')
  await db.updateTable('clients').set({ scopes: ['notes:write'] }).where('client_id', '=', 'svc').execute()
  t.equal(await authenticate(), 'ok notes:read', 'the change not heard yet: the kept row')
  clientCache.changed('svc')
  t.equal(await authenticate(), 'ok notes:write', 'heard: read again')
  await disableClient(db, 'svc', ctx.deps.clock, OPERATOR)
  clientCache.feed({ live: false, epoch: 2 })
  t.equal(await authenticate(), 'invalid_client client disabled', 'the feed lost: the database answers')
})

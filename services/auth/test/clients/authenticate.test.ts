/**
 * authenticateClient against the real Postgres: the row comes back from one
 * fixed statement (CLIENT_READ_SQL), and Postgres judges the rotated-out
 * secret's grace against the `now` it is given, to the millisecond.
 */
import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { authenticateClient, CLIENT_READ_SQL } from '../../src/clients/authenticate.js'
import { createClient } from '../../src/clients/register.js'
import { rotateClientSecret } from '../../src/clients/rotate-secret.js'
import { disableClient } from '../../src/clients/end.js'
import { OAuthError } from '../../src/errors.js'

const OPERATOR = { actor: 'operator' }

t.test('the previous secret works until the instant its grace ends, judged at the given now', async (t) => {
  const ctx = await buildTestApp(t)
  const db = ctx.deps.db
  const deps = { db, config: ctx.config }
  const created = await createClient(db, { clientId: 'svc', confidential: true, grants: ['client_credentials'], scopes: ['notes:read'], resources: ['urn:tessera:notes'] }, ctx.deps.clock(), OPERATOR)
  const rotatedAt = ctx.deps.clock()
  const rotated = await rotateClientSecret(db, { clientId: 'svc', graceSeconds: 60, now: rotatedAt }, OPERATOR)
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
  await disableClient(db, 'svc', at(1), OPERATOR)
  t.equal(await authenticate(rotated.secret, at(2)), 'invalid_client client disabled')
  t.equal(await authenticateClient(deps, { credentials: { method: 'none', clientId: 'nobody' }, now: at(0), context: {} }).catch((err: OAuthError) => err.detail), 'unknown client')
  t.match(CLIENT_READ_SQL, /^select .* from clients where client_id = \$1$/, 'one fixed statement, nothing compiled per request')
})

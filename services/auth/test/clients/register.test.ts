/**
 * Clients and resources (DESIGN.md): client authentication, client_credentials,
 * RFC 8707 resources, refresh binding, rotation, disable and delete, audit,
 * against the real app and Postgres.
 */
import t, { type Test } from 'tap'
import { decodeJwt } from 'jose'
import { buildTestApp, signUp, type TestApp } from '../helpers/app.js'
import { createClient } from '../../src/clients/register.js'
import { rotateClientSecret } from '../../src/clients/rotate-secret.js'
import { deleteClient, disableClient } from '../../src/clients/end.js'

const PASSWORD = 'correct horse battery'
const NOTES = 'urn:tessera:notes'
const BILLING = 'https://billing.example/api'
const OPERATOR = { actor: 'operator' }

type Body = Record<string, unknown>

async function register (ctx: TestApp, clientId: string, options: { confidential?: boolean, grants?: string[], scopes?: string[], resources?: string[] } = {}): Promise<string> {
  const confidential = options.confidential ?? true
  const created = await createClient(ctx.deps.db, {
    clientId,
    confidential,
    grants: options.grants ?? (confidential ? ['client_credentials'] : ['password', 'refresh_token']),
    scopes: options.scopes ?? ['notes:read', 'notes:write'],
    resources: options.resources ?? [NOTES]
  }, ctx.deps.clock(), OPERATOR)
  return created.secret ?? ''
}

const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`

async function token (ctx: TestApp, payload: Body, headers: Record<string, string> = {}): Promise<{ status: number, body: Body, headers: Record<string, unknown> }> {
  const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload, headers })
  return { status: res.statusCode, body: res.json(), headers: res.headers }
}

async function auditTypes (ctx: TestApp): Promise<Array<{ type: string, detail: Record<string, unknown> }>> {
  return await ctx.deps.db.selectFrom('audit_events').select(['type', 'detail']).where('type', 'like', 'client.%').orderBy('id').execute()
}

t.test('client_credentials: Basic and post authentication, sub = client_id, access token only', async (t) => {
  const ctx = await buildTestApp(t)
  const secret = await register(ctx, 'reports', { scopes: ['notes:read', 'notes:write'] })
  t.match(secret, /^[A-Za-z0-9_-]{43}$/, '256 bits, base64url')
  const row = await ctx.deps.db.selectFrom('clients').selectAll().where('client_id', '=', 'reports').executeTakeFirstOrThrow()
  t.equal(row.secret_digest?.length, 32, 'a SHA-256 digest is stored')
  t.notOk(JSON.stringify(row).includes(secret), 'the secret itself is not')

  const viaBasic = await token(ctx, { grant_type: 'client_credentials', resource: NOTES }, { authorization: basic('reports', secret) })
  t.equal(viaBasic.status, 200, 'client_credentials with Basic', { body: viaBasic.body })
  t.equal(viaBasic.headers['cache-control'], 'no-store')
  t.same(Object.keys(viaBasic.body).sort(), ['access_token', 'expires_in', 'scope', 'token_type'], 'no refresh token')
  const claims = decodeJwt(viaBasic.body.access_token as string)
  t.match(claims, { sub: 'reports', client_id: 'reports', aud: NOTES, scope: 'notes:read notes:write', iss: ctx.config.issuer })
  t.notOk('sid' in claims, 'no session')
  // t.match above reads a string as a substring: the default is exactly all of the client's scopes.
  t.same([viaBasic.body.scope, claims.scope], ['notes:read notes:write', 'notes:read notes:write'], 'no scope asked: all of the client\'s')
  t.same([(await ctx.deps.db.selectFrom('sessions').select('id').execute()).length, (await ctx.deps.db.selectFrom('refresh_tokens').select('jti').execute()).length], [0, 0], 'nor a session row, nor a refresh token row')

  const viaPost = await token(ctx, { grant_type: 'client_credentials', client_id: 'reports', client_secret: secret, scope: 'notes:read' })
  t.equal(viaPost.status, 200)
  t.equal(viaPost.body.scope, 'notes:read', 'requested scopes within the client\'s')
  t.equal(decodeJwt(viaPost.body.access_token as string).aud, 'api', 'without resource: TESSERA_AUDIENCE')
  const form = await ctx.app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=client_credentials&client_id=reports&client_secret=${secret}&resource=${encodeURIComponent(NOTES)}`
  })
  t.equal(form.statusCode, 200, 'form-encoded too')

  const wide = await token(ctx, { grant_type: 'client_credentials', client_id: 'reports', client_secret: secret, scope: 'admin' })
  t.match(wide, { status: 400, body: { error: 'invalid_scope' } })
  const apiCall = await ctx.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${viaPost.body.access_token as string}` } })
  t.equal(apiCall.statusCode, 401, 'a client token is no user: /v1 refuses it (no session)')
  t.notOk(ctx.logs().includes(secret), 'the secret never reaches the log')
})

t.test('client authentication failures: the precise error, never a hint, never a 500', async (t) => {
  const ctx = await buildTestApp(t)
  const secret = await register(ctx, 'svc')
  await register(ctx, 'spa', { confidential: false })
  const cc = { grant_type: 'client_credentials' }
  const refusedBasic = (t: Test, res: Awaited<ReturnType<typeof token>>, what: string): void => {
    t.equal(res.status, 401, what)
    t.equal(res.body.error, 'invalid_client', what)
    t.match(res.headers['www-authenticate'], /^Basic realm="tessera"/, `${what}: WWW-Authenticate: Basic`)
  }
  refusedBasic(t, await token(ctx, cc, { authorization: basic('svc', 'wrong') }), 'a wrong secret')
  refusedBasic(t, await token(ctx, cc, { authorization: basic('nobody', secret) }), 'an unknown client')
  refusedBasic(t, await token(ctx, cc, { authorization: 'Basic !!!not-base64' }), 'not base64')
  refusedBasic(t, await token(ctx, cc, { authorization: `Basic ${Buffer.from('svc-no-colon').toString('base64')}` }), 'no colon')
  refusedBasic(t, await token(ctx, cc, { authorization: `Basic ${Buffer.from([0x73, 0xff, 0x3a, 0x61]).toString('base64')}` }), 'not UTF-8')
  refusedBasic(t, await token(ctx, cc, { authorization: `Basic ${Buffer.from(`:${secret}`).toString('base64')}` }), 'an empty id')
  refusedBasic(t, await token(ctx, cc, { authorization: `Basic ${Buffer.from('a%zz:b').toString('base64')}` }), 'broken percent-encoding')
  refusedBasic(t, await token(ctx, cc, { authorization: basic('has space', secret) }), 'an id outside the pattern')
  refusedBasic(t, await token(ctx, cc, { authorization: 'Basic' }), 'no credentials at all')
  // Read or refused, never ignored: ignored, the request would run as the default (public) client.
  refusedBasic(t, await token(ctx, cc, { authorization: `Basic\t${Buffer.from(`svc:${secret}`).toString('base64')}` }), 'a tab after the scheme')
  refusedBasic(t, await token(ctx, cc, { authorization: `${basic('svc', 'wrong')} extra` }), 'a second credential')
  refusedBasic(t, await token(ctx, { grant_type: 'password', username: 'nobody', password: 'x' }, { authorization: `basic  ${Buffer.from('svc:wrong').toString('base64')} x` }), 'the same on a password grant')
  refusedBasic(t, await token(ctx, cc, { authorization: basic('spa', 'anything') }), 'a secret sent to a public client')

  const post = await token(ctx, { ...cc, client_id: 'svc', client_secret: 'wrong' })
  t.match(post, { status: 401, body: { error: 'invalid_client', error_description: 'client authentication failed' } })
  t.notOk('www-authenticate' in post.headers, 'no Basic challenge when Basic was not used')
  t.match(await token(ctx, { ...cc, client_id: 'svc' }), { status: 401, body: { error: 'invalid_client' } }, 'a confidential client without its secret')
  t.match(await token(ctx, { ...cc, client_id: 'spa', client_secret: 'x' }), { status: 401, body: { error: 'invalid_client' } }, 'a secret sent to a public client (post)')
  t.same((await token(ctx, { ...cc, client_id: 'nobody', client_secret: 'x' })).body, post.body, 'unknown and wrong secret read alike')

  const both = await token(ctx, { ...cc, client_id: 'svc', client_secret: secret }, { authorization: basic('svc', secret) })
  t.match(both, { status: 400, body: { error: 'invalid_request' } }, 'Basic and client_secret at once (RFC 6749 §2.3)')
  t.match(await token(ctx, { ...cc, client_id: 'other' }, { authorization: basic('svc', secret) }), { status: 400, body: { error: 'invalid_request' } }, 'a body client_id that differs from Basic')
  t.match(await token(ctx, { ...cc, client_secret: secret }), { status: 400, body: { error: 'invalid_request' } }, 'client_secret without client_id')
  t.match(await token(ctx, { ...cc, client_id: 'bad id!', client_secret: secret }), { status: 400, body: { error: 'invalid_request' } }, 'a client_id outside the pattern')
  t.match(await token(ctx, { ...cc, client_id: 'x'.repeat(65) }), { status: 400, body: { error: 'invalid_request' } }, 'a client_id too long')

  t.match(await token(ctx, { grant_type: 'client_credentials', client_id: 'spa' }), { status: 400, body: { error: 'unauthorized_client' } }, 'a public client cannot use client_credentials')
  t.match(await token(ctx, { grant_type: 'password', username: 'u', password: PASSWORD }, { authorization: basic('svc', secret) }), { status: 400, body: { error: 'unauthorized_client' } }, 'a grant the client is not registered for')
  t.match(await token(ctx, { grant_type: 'refresh_token', refresh_token: 'x' }, { authorization: basic('svc', secret) }), { status: 400, body: { error: 'unauthorized_client' } })
  t.match(await token(ctx, { grant_type: 'authorization_code' }, { authorization: basic('svc', secret) }), { status: 400, body: { error: 'unsupported_grant_type' } })

  // A client that swaps its id and its secret sends the secret as its id: unknown, and never written down.
  refusedBasic(t, await token(ctx, cc, { authorization: basic(secret, 'svc') }), 'id and secret swapped in Basic')
  t.match(await token(ctx, { ...cc, client_id: secret, client_secret: 'svc' }), { status: 401, body: { error: 'invalid_client' } }, 'id and secret swapped in the body')

  const failures = (await auditTypes(ctx)).filter((e) => e.type === 'client.authentication_failed')
  t.equal(failures.length, 9, 'each failed authentication of a readable client id is audited (unreadable Basic headers name no client)')
  t.match(failures.slice(-2).map((f) => f.detail), [{ client_id: '#secret-shaped', reason: 'unknown client' }, { client_id: '#secret-shaped', reason: 'unknown client' }], 'an unknown id shaped like a secret is recorded as such')
  const actors = await ctx.deps.db.selectFrom('audit_events').select('actor').where('type', '=', 'client.authentication_failed').execute()
  t.notOk(JSON.stringify(actors).includes(secret), 'the actor column neither')
  t.match(failures[0]?.detail, { client_id: 'svc', reason: 'wrong secret', method: 'client_secret_basic' })
  t.notOk(JSON.stringify(failures).includes(secret), 'never with the secret')
  t.notOk(ctx.logs().includes(secret), 'nor in the log')
})

t.test('resource indicators (RFC 8707) on every grant', async (t) => {
  const ctx = await buildTestApp(t)
  const secret = await register(ctx, 'svc', { resources: [NOTES, 'https://billing.example/api'] })
  const cc = { grant_type: 'client_credentials', client_id: 'svc', client_secret: secret }
  t.equal(decodeJwt((await token(ctx, { ...cc, resource: 'https://billing.example/api' })).body.access_token as string).aud, 'https://billing.example/api')
  for (const [resource, what] of [
    ['notes', 'not an absolute URI'],
    ['https://billing.example/api#frag', 'a fragment'],
    ['https://other.example/', 'a resource the client may not ask for'],
    ['https://bad example/', 'a space'],
    ['urn:x\u0001y', 'a control character']
  ] as const) {
    const res = await token(ctx, { ...cc, resource })
    t.match(res, { status: 400, body: { error: 'invalid_target' } }, what)
  }
  t.match(await token(ctx, { ...cc, resource: ['', NOTES] }), { status: 400, body: { error: 'invalid_target' } }, 'an empty resource among several is still one too many')
  const twice = await ctx.app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=client_credentials&client_id=svc&client_secret=${secret}&resource=${encodeURIComponent(NOTES)}&resource=${encodeURIComponent('https://billing.example/api')}`
  })
  t.equal(twice.statusCode, 400)
  t.equal(twice.json().error, 'invalid_target', 'one resource per request')

  await signUp(ctx.app, 'uma', PASSWORD)
  await register(ctx, 'web', { confidential: false, scopes: ['notes:read', 'notes:write', 'profile'], resources: [NOTES] })
  const user = await token(ctx, { grant_type: 'password', username: 'uma', password: PASSWORD, client_id: 'web', resource: NOTES, scope: 'notes:read' })
  t.equal(user.status, 200)
  t.match(decodeJwt(user.body.access_token as string), { aud: NOTES, client_id: 'web', scope: 'notes:read' })
  const account = await ctx.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${user.body.access_token as string}` } })
  t.equal(account.statusCode, 401, 'a token for a resource cannot use the account routes (docs/decisions.md, "Scopes are for resources")')
  t.match(await token(ctx, { grant_type: 'password', username: 'uma', password: PASSWORD, resource: NOTES }), { status: 400, body: { error: 'invalid_target' } }, 'the default client has no resources')
  t.match(await token(ctx, { grant_type: 'password', username: 'uma', password: PASSWORD, client_id: 'web', scope: 'read' }), { status: 400, body: { error: 'invalid_scope' } }, 'user scopes are within the client\'s')
})

t.test('the issuer is no resource on any grant, though registered as one: it is the aud of refresh tokens, which an access token must never share', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_ISSUER: 'https://auth.example.com' })
  const issuer = ctx.config.issuer
  const refused = { status: 400, body: { error: 'invalid_target', error_description: 'resource: the issuer is no resource; its audience is that of refresh tokens' } }
  const secret = await register(ctx, 'svc', { resources: [NOTES, issuer] })
  t.same(await token(ctx, { grant_type: 'client_credentials', client_id: 'svc', client_secret: secret, resource: issuer }).then(({ status, body }) => ({ status, body })), refused, 'client_credentials')
  await signUp(ctx.app, 'wes', PASSWORD)
  await register(ctx, 'web', { confidential: false, resources: [NOTES, issuer] })
  const login = { grant_type: 'password', username: 'wes', password: PASSWORD, client_id: 'web' }
  t.same(await token(ctx, { ...login, resource: issuer }).then(({ status, body }) => ({ status, body })), refused, 'password')
  const pair = await token(ctx, { ...login, resource: NOTES })
  t.equal(pair.status, 200)
  t.same(await token(ctx, { grant_type: 'refresh_token', refresh_token: pair.body.refresh_token, client_id: 'web', resource: issuer }).then(({ status, body }) => ({ status, body })), refused, 'refresh_token')
  t.equal((await token(ctx, { grant_type: 'refresh_token', refresh_token: pair.body.refresh_token, client_id: 'web', resource: `${issuer}/v1` })).status, 400, 'a URL under it is another resource, which this client may not ask for')
  t.equal((await token(ctx, { grant_type: 'refresh_token', refresh_token: pair.body.refresh_token, client_id: 'web', resource: NOTES })).status, 200, 'the refusals did not use the refresh token up')
})

t.test('refresh tokens belong to their client and remember their session\'s resources', async (t) => {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'vera', PASSWORD)
  await register(ctx, 'web', { confidential: false, resources: [NOTES, BILLING] })
  const appSecret = await register(ctx, 'mobile-backend', { grants: ['password', 'refresh_token'], resources: [NOTES] })
  const login = await token(ctx, { grant_type: 'password', username: 'vera', password: PASSWORD, client_id: 'web', resource: NOTES })
  t.equal(login.status, 200)
  const session = await ctx.deps.db.selectFrom('sessions').select(['client_id', 'resources']).executeTakeFirstOrThrow()
  t.same(session, { client_id: 'web', resources: [NOTES, BILLING] }, 'every resource of the client, not only the one the login named')

  const forNotes = await token(ctx, { grant_type: 'refresh_token', refresh_token: login.body.refresh_token, client_id: 'web', resource: NOTES })
  t.equal(forNotes.status, 200)
  t.equal(decodeJwt(forNotes.body.access_token as string).aud, NOTES, 'a refresh may name the session\'s resource')
  const forBilling = await token(ctx, { grant_type: 'refresh_token', refresh_token: forNotes.body.refresh_token, client_id: 'web', resource: BILLING })
  t.equal(forBilling.status, 200, 'or any other of them', { body: forBilling.body })
  t.equal(decodeJwt(forBilling.body.access_token as string).aud, BILLING)
  const plain = await token(ctx, { grant_type: 'refresh_token', refresh_token: forBilling.body.refresh_token, client_id: 'web' })
  t.equal(decodeJwt(plain.body.access_token as string).aud, 'api', 'without resource: TESSERA_AUDIENCE')
  t.match(await token(ctx, { grant_type: 'refresh_token', refresh_token: plain.body.refresh_token, client_id: 'web', resource: 'https://elsewhere.example/' }), { status: 400, body: { error: 'invalid_target' } })
  const stolen = await token(ctx, { grant_type: 'refresh_token', refresh_token: plain.body.refresh_token })
  t.match(stolen, { status: 400, body: { error: 'invalid_grant' } }, 'another client (the default one) presenting it')
  t.equal((await token(ctx, { grant_type: 'refresh_token', refresh_token: plain.body.refresh_token, client_id: 'web' })).status, 200, 'the refused attempts did not use it up')

  const confidential = await token(ctx, { grant_type: 'password', username: 'vera', password: PASSWORD }, { authorization: basic('mobile-backend', appSecret) })
  t.equal(confidential.status, 200)
  t.match(await token(ctx, { grant_type: 'refresh_token', refresh_token: confidential.body.refresh_token, client_id: 'mobile-backend' }), { status: 401, body: { error: 'invalid_client' } }, 'a confidential client must authenticate to refresh')
  t.match(await token(ctx, { grant_type: 'refresh_token', refresh_token: confidential.body.refresh_token, client_id: 'web' }), { status: 400, body: { error: 'invalid_grant' } })
  const otherSecret = await register(ctx, 'other-backend', { grants: ['password', 'refresh_token'], resources: [NOTES] })
  t.match(await token(ctx, { grant_type: 'refresh_token', refresh_token: confidential.body.refresh_token }, { authorization: basic('other-backend', otherSecret) }),
    { status: 400, body: { error: 'invalid_grant' } }, 'another confidential client, authenticated, presenting it')
  t.equal((await token(ctx, { grant_type: 'refresh_token', refresh_token: confidential.body.refresh_token }, { authorization: basic('mobile-backend', appSecret) })).status, 200)
})

t.test('revocation: a client revokes only its own tokens; a confidential client\'s need its authentication', async (t) => {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'wes', PASSWORD)
  const secret = await register(ctx, 'backend', { grants: ['password', 'refresh_token'] })
  const pair = await token(ctx, { grant_type: 'password', username: 'wes', password: PASSWORD }, { authorization: basic('backend', secret) })
  const revoke = async (payload: Body, headers: Record<string, string> = {}): Promise<number> =>
    (await ctx.app.inject({ method: 'POST', url: '/oauth/revoke', payload, headers })).statusCode
  const live = async (): Promise<number> => (await ctx.deps.db.selectFrom('sessions').select('id').where('revoked_at', 'is', null).where('client_id', '=', 'backend').execute()).length
  t.equal(await revoke({ token: pair.body.refresh_token }), 200, 'no client named: 200 …')
  t.equal(await live(), 1, '… and the confidential client\'s session lives on')
  t.equal(await revoke({ token: pair.body.refresh_token, client_id: 'backend', client_secret: 'wrong' }), 401, 'a failed authentication is 401')
  const wrongBasic = await ctx.app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: pair.body.refresh_token }, headers: { authorization: basic('backend', 'wrong') } })
  t.same([wrongBasic.statusCode, wrongBasic.json()], [401, { error: 'invalid_client', error_description: 'client authentication failed' }], 'with Basic too')
  t.equal(wrongBasic.headers['www-authenticate'], 'Basic realm="tessera", charset="UTF-8"', 'and then with the Basic challenge (RFC 6749 §5.2)')
  // RFC 7009 §2.1: the token must have been issued to the client that asks; another one hears the same 200 and changes nothing.
  const otherSecret = await register(ctx, 'other-backend', { grants: ['password', 'refresh_token'] })
  await register(ctx, 'spa', { confidential: false })
  t.equal(await revoke({ token: pair.body.refresh_token }, { authorization: basic('other-backend', otherSecret) }), 200, 'another confidential client, authenticated: 200 …')
  t.equal(await revoke({ token: pair.body.access_token, client_id: 'spa' }), 200, 'a public client naming itself, with the access token: 200 …')
  t.equal(await live(), 1, '… and the session lives on')
  t.equal(await revoke({ token: pair.body.refresh_token }, { authorization: basic('backend', secret) }), 200)
  t.equal(await live(), 0, 'its own client ends it')
  const ended = await ctx.deps.db.selectFrom('audit_events').select(['actor', 'user_id']).where('type', '=', 'session.ended').execute()
  t.equal(ended.length, 1)
  t.match(ended, [{ actor: 'backend', user_id: String }], 'the client that authenticated is who ended it; the user is whose session it was')

  await register(ctx, 'web', { confidential: false })
  const forNotes = await token(ctx, { grant_type: 'password', username: 'wes', password: PASSWORD, client_id: 'web', resource: NOTES })
  t.equal(await revoke({ token: forNotes.body.access_token, token_type_hint: 'access_token', client_id: 'web' }), 200)
  t.equal((await ctx.deps.db.selectFrom('sessions').select('revoke_reason').where('client_id', '=', 'web').executeTakeFirstOrThrow()).revoke_reason, 'revoke', 'an access token for a resource revokes its session too')
  const byUser = await ctx.deps.db.selectFrom('audit_events').select(['actor', 'user_id']).where('type', '=', 'session.ended').orderBy('id', 'desc').executeTakeFirstOrThrow()
  t.equal(byUser.actor, byUser.user_id, 'a public client acts for its user: the user ended it')

  await disableClient(ctx.deps.db, 'backend', ctx.deps.clock, OPERATOR)
  t.equal(await revoke({ token: 'x' }, { authorization: basic('backend', secret) }), 401, 'a disabled client\'s authentication fails at revocation too')
  await deleteClient(ctx.deps.db, 'backend', ctx.deps.clock, OPERATOR)
  t.equal(await revoke({ token: 'x', client_id: 'backend', client_secret: secret }), 401, 'and a deleted one\'s')
})

t.test('a parameter sent without a value is treated as omitted (RFC 6749 §3.1)', async (t) => {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'xena', PASSWORD)
  const secret = await register(ctx, 'svc')
  const login = { grant_type: 'password', username: 'xena', password: PASSWORD }
  t.match(await token(ctx, { ...login, client_id: '' }), { status: 200, body: { scope: 'read write' } }, 'client_id= is the default client')
  t.match(await token(ctx, 'grant_type=password&username=xena&password=correct+horse+battery&client_id=&resource=' as unknown as Body, { 'content-type': 'application/x-www-form-urlencoded' }),
    { status: 200 }, 'the same in a form, and resource= asks for the default audience')
  t.match(await token(ctx, { grant_type: 'client_credentials', client_secret: '', client_id: '' }, { authorization: basic('svc', secret) }),
    { status: 200 }, 'an empty client_secret beside Basic is not a second method')
  t.match(await token(ctx, { ...login, grant_type: '' }), { status: 400, body: { error: 'invalid_request', error_description: 'grant_type: is required' } }, 'grant_type= is missing, not unsupported')
  t.match(await token(ctx, { ...login, password: '' }), { status: 400, body: { error: 'invalid_request', error_description: /password: is required/ } })
  const pair = await token(ctx, login)
  const revoked = await ctx.app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: pair.body.refresh_token, client_id: '', client_secret: '', token_type_hint: '' } })
  t.equal(revoked.statusCode, 200, 'revocation reads them alike')
  t.equal((await token(ctx, { grant_type: 'refresh_token', refresh_token: pair.body.refresh_token })).status, 400, 'and the default client\'s token is revoked')
})

t.test('HTTP Basic: id and secret are form-urlencoded before base64, and decoded so (RFC 6749 §2.3.1)', async (t) => {
  const ctx = await buildTestApp(t)
  const secret = await register(ctx, 'svc.a-b_c')
  // Every character escaped, as an encoder that escapes more than it must (any of them may) sends it.
  const escaped = (text: string): string => [...text].map((ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`).join('')
  const cc = async (credentials: string): Promise<Awaited<ReturnType<typeof token>>> =>
    await token(ctx, { grant_type: 'client_credentials' }, { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` })
  const res = await cc(`${escaped('svc.a-b_c')}:${escaped(secret)}`)
  t.equal(res.status, 200, 'an escaped id and secret are the client\'s', { body: res.body })
  t.equal(decodeJwt(res.body.access_token as string).client_id, 'svc.a-b_c', 'the decoded id is the client, not the escaped text')
  t.equal((await cc(`svc.a-b_c:${escaped(secret).toLowerCase()}`)).status, 200, 'escapes in lower case too')
  t.match(await cc(`svc.a-b_c:${escaped(secret)}%41`), { status: 401, body: { error: 'invalid_client' } }, 'an escaped character more is another secret')
})

t.test('HTTP Basic with an empty secret names a public client, as requests-oauthlib sends it (RFC 6749 §2.3.1, §3.1)', async (t) => {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'yuri', PASSWORD)
  await register(ctx, 'spa', { confidential: false })
  await register(ctx, 'svc', { grants: ['password', 'refresh_token', 'client_credentials'] })
  // requests-oauthlib's OAuth2Session.fetch_token sends a client without a secret as Basic "id:" and leaves client_id out of the body.
  const spa = { authorization: basic('spa', '') }
  const login = await token(ctx, { grant_type: 'password', username: 'yuri', password: PASSWORD }, spa)
  t.equal(login.status, 200, 'the password grant for the public client', { body: login.body })
  t.equal(decodeJwt(login.body.access_token as string).client_id, 'spa', 'the client Basic named, not the default one')
  const refreshed = await token(ctx, { grant_type: 'refresh_token', refresh_token: login.body.refresh_token }, spa)
  t.equal(refreshed.status, 200, 'its refresh, bound to the same client', { body: refreshed.body })
  const revoked = await ctx.app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: refreshed.body.refresh_token }, headers: spa })
  t.equal(revoked.statusCode, 200)
  t.match(await token(ctx, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token }, spa), { status: 400, body: { error: 'invalid_grant' } }, 'and its revocation took')

  const confidential = await token(ctx, { grant_type: 'client_credentials' }, { authorization: basic('svc', '') })
  t.match(confidential, { status: 401, body: { error: 'invalid_client' } }, 'a confidential client still needs its secret')
  t.match(confidential.headers['www-authenticate'], /^Basic realm="tessera"/, 'with the Basic challenge, since Basic was used')
  t.match(await token(ctx, { grant_type: 'client_credentials', client_secret: 'x' }, { authorization: basic('svc', '') }), { status: 400, body: { error: 'invalid_request' } },
    'Basic beside client_secret is still two methods')
  t.match(await token(ctx, { grant_type: 'password', username: 'yuri', password: PASSWORD, client_id: 'other' }, spa), { status: 400, body: { error: 'invalid_request' } },
    'a body client_id that differs from Basic\'s is still refused')
  const failure = (await auditTypes(ctx)).filter((e) => e.type === 'client.authentication_failed')
  t.equal(failure.length, 1)
  t.match(failure[0]?.detail, { client_id: 'svc', reason: 'no client authentication' })
})

t.test('rotate-secret grace, disable and delete', async (t) => {
  const ctx = await buildTestApp(t)
  const old = await register(ctx, 'svc', { grants: ['client_credentials', 'password', 'refresh_token'] })
  const cc = async (secret: string): Promise<number> => (await token(ctx, { grant_type: 'client_credentials' }, { authorization: basic('svc', secret) })).status
  const rotated = await rotateClientSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 60, clock: ctx.deps.clock }, OPERATOR)
  if (rotated.kind !== 'rotated') throw new Error('not rotated')
  t.not(rotated.secret, old)
  t.equal(await cc(old), 200, 'the old secret works inside the grace period')
  t.equal(await cc(rotated.secret), 200, 'the new one too')
  ctx.advance(61)
  t.equal(await cc(old), 401, 'after it, the old one fails')
  t.equal(await cc(rotated.secret), 200)
  const again = await rotateClientSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 0, clock: ctx.deps.clock }, OPERATOR)
  if (again.kind !== 'rotated') throw new Error('not rotated')
  t.equal(await cc(rotated.secret), 401, 'grace 0: the replaced secret stops at once')
  t.same(await rotateClientSecret(ctx.deps.db, { clientId: 'tessera', graceSeconds: 0, clock: ctx.deps.clock }, OPERATOR), { kind: 'public' })
  t.same(await rotateClientSecret(ctx.deps.db, { clientId: 'nobody', graceSeconds: 0, clock: ctx.deps.clock }, OPERATOR), { kind: 'unknown' })

  await signUp(ctx.app, 'xena', PASSWORD)
  const pair = await token(ctx, { grant_type: 'password', username: 'xena', password: PASSWORD }, { authorization: basic('svc', again.secret) })
  t.equal(pair.status, 200)
  t.same(await disableClient(ctx.deps.db, 'svc', ctx.deps.clock, OPERATOR), { changed: true, sessionsEnded: 1 }, 'disable ends the client\'s sessions')
  t.same(await disableClient(ctx.deps.db, 'svc', ctx.deps.clock, OPERATOR), { changed: false, sessionsEnded: 0 }, 'idempotent')
  t.equal(await cc(again.secret), 401, 'a disabled client cannot authenticate')
  t.match(await token(ctx, { grant_type: 'refresh_token', refresh_token: pair.body.refresh_token }, { authorization: basic('svc', again.secret) }), { status: 401, body: { error: 'invalid_client' } })
  t.same(await deleteClient(ctx.deps.db, 'svc', ctx.deps.clock, OPERATOR), { changed: true, sessionsEnded: 0 })
  t.equal(await deleteClient(ctx.deps.db, 'svc', ctx.deps.clock, OPERATOR), undefined)
  t.equal(await cc(again.secret), 401, 'a deleted client cannot authenticate')
  const ended = await ctx.deps.db.selectFrom('sessions').select('revoke_reason').executeTakeFirstOrThrow()
  t.equal(ended.revoke_reason, 'client_disabled')
  t.same((await auditTypes(ctx)).map((e) => e.type).filter((type) => type !== 'client.authentication_failed'),
    ['client.created', 'client.created', 'client.secret_rotated', 'client.secret_rotated', 'client.disabled', 'client.deleted'], 'the default client, then svc')
})

t.test('the default public client exists from the first start, and a registration breaks no rule', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_DEFAULT_CLIENT_ID: 'first-party', TESSERA_SCOPES: 'a b' })
  const row = await ctx.deps.db.selectFrom('clients').selectAll().executeTakeFirstOrThrow()
  t.match(row, { client_id: 'first-party', confidential: false, secret_digest: null })
  // Not in the t.match: it would take longer lists, and [] would match any.
  t.same({ grants: row.grants, scopes: row.scopes, resources: row.resources }, { grants: ['password', 'refresh_token'], scopes: ['a', 'b'], resources: [] })
  const rejects = async (what: string, values: Record<string, unknown>): Promise<void> => {
    await t.rejects(ctx.deps.db.insertInto('clients').values({ client_id: 'raw', confidential: false, grants: ['password'], scopes: [], resources: [], ...values }).execute(), { code: /^23/ }, what)
  }
  await rejects('the schema refuses a public client with a secret', { secret_digest: Buffer.alloc(32) })
  await rejects('a confidential client without one', { confidential: true })
  await rejects('client_credentials for a public client', { grants: ['client_credentials'] })
  await rejects('an unknown grant', { grants: ['implicit'] })
  await rejects('a digest that is not SHA-256 sized', { confidential: true, secret_digest: Buffer.alloc(16) })
  await signUp(ctx.app, 'yuri', PASSWORD)
  const res = await token(ctx, { grant_type: 'password', username: 'yuri', password: PASSWORD })
  t.equal(res.status, 200)
  t.equal(decodeJwt(res.body.access_token as string).client_id, 'first-party')
  t.match(await token(ctx, { grant_type: 'password', username: 'yuri', password: PASSWORD, client_id: 'tessera' }), { status: 401, body: { error: 'invalid_client' } }, 'an unregistered client')
  const rule = async (input: Partial<Parameters<typeof createClient>[1]>, message: RegExp): Promise<void> => {
    await t.rejects(createClient(ctx.deps.db, { clientId: 'c', confidential: false, grants: ['password'], scopes: ['read'], resources: [], ...input }, new Date(), OPERATOR), message)
  }
  await rule({ clientId: 'no spaces' }, /^client_id:/)
  await rule({ clientId: 'x'.repeat(65) }, /^client_id:/)
  // The bounds themselves are ids: 1 and 64 characters, every one of [A-Za-z0-9._-], registered and served by both methods.
  for (const id of ['Z', `aZ09._-${'x'.repeat(57)}`]) {
    const secret = await register(ctx, id, { resources: [] })
    t.equal((await token(ctx, { grant_type: 'client_credentials' }, { authorization: basic(id, secret) })).status, 200, `a ${id.length}-character id, Basic`)
    t.equal((await token(ctx, { grant_type: 'client_credentials', client_id: id, client_secret: secret })).status, 200, `a ${id.length}-character id, in the body`)
  }
  await rule({ grants: ['implicit'] }, /^grants:/)
  await rule({ grants: [] }, /^grants:/)
  await rule({ grants: ['client_credentials'] }, /public client cannot use client_credentials/)
  await rule({ scopes: [] }, /^scopes: expected at least one scope/)
  await rule({ scopes: ['a"b'] }, /^scopes:/)
  await rule({ resources: ['relative/path'] }, /^resources:/)
  await rule({ resources: ['https://x.example/#f'] }, /^resources:/)
  await rule({ resources: ['https://ex\u00e4mple.com/api'] }, /^resources: "https:\/\/ex\u00e4mple\.com\/api" is not an absolute URI/)
  await rule({ resources: ['urn:\u00fc'] }, /^resources:/)
  // 1,024 characters in all, spaces included: 128 scopes of 7 characters and 127 spaces is 1,023; one more character is over.
  const scopes = Array.from({ length: 128 }, (_, i) => `s${String(i).padStart(6, '0')}`)
  t.equal(scopes.join(' ').length, 1023)
  await t.resolves(createClient(ctx.deps.db, { clientId: 'wide', confidential: false, grants: ['password'], scopes, resources: [] }, new Date(), OPERATOR), 'at the bound, registered')
  await rule({ scopes: [...scopes.slice(0, -1), 's0000127x'] }, /^scopes: 1025 characters in all, at most 1024/)
  await rule({ scopes: ['x'.repeat(100_000)] }, /^scopes: 100000 characters in all, at most 1024/)
})

t.test('metadata lists the grants and client authentication methods, and nothing Tessera does not serve', async (t) => {
  const { app } = await buildTestApp(t)
  const metadata = (await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })).json()
  t.same(metadata.grant_types_supported, ['password', 'refresh_token', 'client_credentials'])
  t.same(metadata.token_endpoint_auth_methods_supported, ['none', 'client_secret_basic', 'client_secret_post'])
  t.same(metadata.revocation_endpoint_auth_methods_supported, ['none', 'client_secret_basic', 'client_secret_post'])
  for (const field of ['id_token_signing_alg_values_supported', 'subject_types_supported', 'token_endpoint_auth_signing_alg_values_supported']) {
    t.notOk(field in metadata, `no ${field}`)
  }
  // service_documentation stays: it is /openapi.json, which answers (test/openapi.test.ts).
  t.equal((await app.inject({ method: 'GET', url: new URL(String(metadata.service_documentation)).pathname })).statusCode, 200)
})

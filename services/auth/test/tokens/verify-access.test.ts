/**
 * The claim checks of tokens/verify-access.ts that test/access-token.test.ts
 * does not reach: what fast-jwt checked for us before /v1 verified with
 * node:crypto. Tokens are our real ones, re-signed with our real key and
 * chosen claims, so only the claim under test differs.
 */
import t from 'tap'
import { sign } from 'node:crypto'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { buildTestApp, login, signUp, type TestApp } from '../helpers/app.js'

const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** Claims written as given, for JSON that JSON.stringify would not write (1e400). */
function resignText (ctx: TestApp, header: object, claims: string): string {
  const key = ctx.deps.keyring.signer
  if (key === undefined) throw new Error('no signer')
  const input = `${b64(header)}.${Buffer.from(claims).toString('base64url')}`
  return `${input}.${sign('sha256', Buffer.from(input), key.privateKey).toString('base64url')}`
}

function resign (ctx: TestApp, header: object, claims: object): string {
  return resignText(ctx, header, JSON.stringify(claims))
}

t.test('claims: nbf, required claims, audience arrays, typ spelling, the injected clock', async (t) => {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'nadia', 'correct horse battery')
  const { access_token: access } = await login(ctx.app, 'nadia', 'correct horse battery')
  const header = decodeProtectedHeader(access)
  const claims = decodeJwt(access)
  const { jti: _jti, ...withoutJti } = claims
  // The app's clock is frozen at build time: the token's iat is its now.
  const now = Number(claims.iat)
  const status = async (token: string): Promise<number> =>
    (await ctx.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } })).statusCode
  const cases: Array<[string, string, number]> = [
    ['the token as minted', access, 200],
    ['typ in another case and with its media type prefix', resign(ctx, { ...header, typ: 'Application/AT+JWT' }, claims), 200],
    ['an audience array holding ours', resign(ctx, header, { ...claims, aud: ['billing', 'api'] }), 200],
    ['an nbf already reached', resign(ctx, header, { ...claims, nbf: now - 5 }), 200],
    ['an nbf in the future', resign(ctx, header, { ...claims, nbf: now + 600 }), 401],
    ['an nbf that is not a number', resign(ctx, header, { ...claims, nbf: 'soon' }), 401],
    ['no jti', resign(ctx, header, withoutJti), 401],
    ['an audience array without ours', resign(ctx, header, { ...claims, aud: ['billing'] }), 401],
    ['an audience that is not a string', resign(ctx, header, { ...claims, aud: [42, 'api'] }), 401],
    ['an exp that is not a number', resign(ctx, header, { ...claims, exp: String(claims.exp) }), 401],
    ['an issuer array', resign(ctx, header, { ...claims, iss: [claims.iss] }), 401],
    ['a sub that is not a string', resign(ctx, header, { ...claims, sub: 7 }), 401],
    ['a payload that is not an object', resign(ctx, header, ['not', 'an', 'object'] as unknown as object), 401],
    // Each of these was a 500: Postgres refused the session's read (invalid input syntax for type uuid, a NUL in UTF-8).
    ['a sub that is not a uuid', resign(ctx, header, { ...claims, sub: 'not-a-uuid' }), 401],
    ['a sid that is not a uuid', resign(ctx, header, { ...claims, sid: 'not-a-uuid' }), 401],
    ['a sid with a NUL', resign(ctx, header, { ...claims, sid: 'a\u0000b' }), 401],
    ['a sid in upper case, which we never mint', resign(ctx, header, { ...claims, sid: String(claims.sid).toUpperCase() }), 401],
    // Minted on every access token, as a uuid and two strings: a null or a number jti was accepted, and a client_id or scope of another type read as ''.
    ['a jti that is null', resign(ctx, header, { ...claims, jti: null }), 401],
    ['a jti that is a number', resign(ctx, header, { ...claims, jti: 7 }), 401],
    ['a jti that is not a uuid', resign(ctx, header, { ...claims, jti: 'not-a-uuid' }), 401],
    ['no client_id', resign(ctx, header, { ...claims, client_id: undefined }), 401],
    ['a client_id that is an object', resign(ctx, header, { ...claims, client_id: { id: 'web' } }), 401],
    ['no scope', resign(ctx, header, { ...claims, scope: undefined }), 401],
    ['a scope that is a list', resign(ctx, header, { ...claims, scope: ['profile'] }), 401],
    ['an iat that is not a number', resign(ctx, header, { ...claims, iat: 'now' }), 401],
    ['an iat a year ahead', resign(ctx, header, { ...claims, iat: now + 366 * 86400 }), 401],
    ['an iat within the 60 s instances\' clocks may differ by', resign(ctx, header, { ...claims, iat: now + 60 }), 200],
    ['an iat just past it', resign(ctx, header, { ...claims, iat: now + 61 }), 401],
    ['an exp of 1e400, which JSON reads as Infinity', resignText(ctx, header, JSON.stringify({ ...claims, exp: 0 }).replace('"exp":0', '"exp":1e400')), 401],
    ['a header that is not JSON', `bm90LWpzb24.${access.split('.')[1] ?? ''}.${access.split('.')[2] ?? ''}`, 401]
  ]
  for (const [name, token, expected] of cases) t.equal(await status(token), expected, name)
  ctx.advance(Number(claims.exp) - now + 1)
  t.equal(await status(access), 401, 'expired by the injected clock')
})

/** The same token with its segment's last character changed in a bit no decoder reads: the same bytes, spelled another way. */
function respelled (token: string, segment: number): string {
  const parts = token.split('.')
  const text = parts[segment] ?? ''
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  parts[segment] = `${text.slice(0, -1)}${alphabet[alphabet.indexOf(text.slice(-1)) ^ 1] ?? ''}`
  return parts.join('.')
}

t.test('one judgement of an access token on /v1, SimpleJWT\'s verify and /oauth/revoke (any audience for the last two), and no token respelled', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  await signUp(ctx.app, 'noor', 'correct horse battery')
  const tokens = await login(ctx.app, 'noor', 'correct horse battery')
  const access = tokens.access_token
  const header = decodeProtectedHeader(access)
  const { exp: _exp, aud: _aud, ...claims } = decodeJwt(access)
  const full = { ...claims, exp: _exp, aud: _aud }
  const me = async (token: string): Promise<number> =>
    (await ctx.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } })).statusCode
  const verify = async (token: string): Promise<number> =>
    (await ctx.app.inject({ method: 'POST', url: '/api/token/verify/', payload: { token } })).statusCode
  t.ok(access.split('.').every((segment) => segment.length % 4 !== 0), 'each segment of this token ends in a character with unused bits')
  const cases: Array<[string, string, number, number]> = [
    ['as minted', access, 200, 200],
    ['for another audience, as a resource\'s token is', resign(ctx, header, { ...full, aud: 'urn:example:other' }), 401, 200],
    ['without exp', resign(ctx, header, { ...claims, aud: _aud }), 401, 401],
    ['without aud', resign(ctx, header, { ...claims, exp: _exp }), 401, 401],
    ['with a jku header', resign(ctx, { ...header, jku: 'https://attacker.example/jwks' }, full), 401, 401],
    ['with a sub that is not a string', resign(ctx, header, { ...full, sub: 5 }), 401, 401],
    // Accepted by all three before: revoking one ended its session.
    ['with a jti that is null', resign(ctx, header, { ...full, jti: null }), 401, 401],
    // A 500 at all three (revoke too) before: Postgres refused it as a session id.
    ['with a sid that is not a uuid', resign(ctx, header, { ...full, sid: 'not-a-uuid' }), 401, 401],
    // The header's and the claims' text is what the signature covers, so these fail on the signature too; the signature's own respelling is what only the spelling check refuses.
    ['its header respelled (refused by its signature as well)', respelled(access, 0), 401, 401],
    ['its claims respelled (refused by its signature as well)', respelled(access, 1), 401, 401],
    ['its signature respelled', respelled(access, 2), 401, 401]
  ]
  for (const [name, token, onMe, onVerify] of cases) {
    t.same([await me(token), await verify(token)], [onMe, onVerify], name)
  }
  for (const [name, token] of cases.slice(2)) {
    t.equal((await ctx.app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token } })).statusCode, 200, `revoking one ${name}: 200, as for any token`)
    t.equal(await me(access), 200, `and its session goes on: ${name} is not a token of ours`)
  }
  const refresh = async (token: string): Promise<number> =>
    (await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: token } })).statusCode
  t.equal(await refresh(respelled(tokens.refresh_token, 2)), 400, 'a refresh token respelled is refused too')
  t.equal(await refresh(tokens.refresh_token), 200, 'and was not spent')
})

t.test('what a refused header says back in the log is cut to 64 characters, its alg as its kid: a log line does not grow with the client\'s text', async (t) => {
  const { app, logs } = await buildTestApp(t)
  const long = 'Q'.repeat(8000)
  const unsigned = (header: object): string => `${b64(header)}.${b64({ sub: 'u' })}.AAAA`
  const cases: Array<[string, object, string]> = [
    ['a long alg', { alg: long, kid: 'k', typ: 'at+jwt' }, 'alg '],
    ['an alg that is a list of long texts', { alg: [long, long], kid: 'k', typ: 'at+jwt' }, 'alg '],
    ['a long unknown kid', { alg: 'RS256', kid: long, typ: 'at+jwt' }, 'unknown kid ']
  ]
  for (const [name, header] of cases) {
    const res = await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${unsigned(header)}` } })
    t.equal(res.statusCode, 401, `${name}: 401`)
  }
  const said = logs().match(/Q+/g) ?? []
  t.equal(said.length, cases.length, 'each refusal says the client\'s text back once')
  t.ok(said.every((text) => text.length === 64), `each to 64 characters (said: ${said.map((text) => text.length).join(', ')})`)
  for (const [, , prefix] of cases) t.match(logs(), new RegExp(`${prefix}Q{64}`), `the reason still reads "${prefix}…"`)
})

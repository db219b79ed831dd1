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

function resign (ctx: TestApp, header: object, claims: object): string {
  const key = ctx.deps.keyring.signer
  if (key === undefined) throw new Error('no signer')
  const input = `${b64(header)}.${b64(claims)}`
  return `${input}.${sign('sha256', Buffer.from(input), key.privateKey).toString('base64url')}`
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
    ['a header that is not JSON', `bm90LWpzb24.${access.split('.')[1] ?? ''}.${access.split('.')[2] ?? ''}`, 401]
  ]
  for (const [name, token, expected] of cases) t.equal(await status(token), expected, name)
  ctx.advance(Number(claims.exp) - now + 1)
  t.equal(await status(access), 401, 'expired by the injected clock')
})

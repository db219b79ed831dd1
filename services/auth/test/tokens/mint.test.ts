import t, { type Test } from 'tap'
import { createHmac, generateKeyPairSync, sign } from 'node:crypto'
import { decodeJwt, decodeProtectedHeader, exportJWK } from 'jose'
import { buildTestApp, login, signUp, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'
const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')

async function setup (t: Test): Promise<{ ctx: TestApp, access: string, refresh: string }> {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'mallory', PASSWORD)
  const tokens = await login(ctx.app, 'mallory', PASSWORD)
  return { ctx, access: tokens.access_token, refresh: tokens.refresh_token }
}

/** Re-signs the access token's claims with our real key but a chosen header. */
function resignWithHeader (ctx: TestApp, token: string, header: object, claims?: object): string {
  const key = ctx.deps.keyring.signer
  if (key === undefined) throw new Error('no signer')
  const input = `${b64(header)}.${b64(claims ?? decodeJwt(token))}`
  return `${input}.${sign('sha256', Buffer.from(input), key.privateKey).toString('base64url')}`
}

async function me (ctx: TestApp, token: string): Promise<{ status: number, wwwAuthenticate: unknown, body: Record<string, unknown> }> {
  const res = await ctx.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } })
  return { status: res.statusCode, wwwAuthenticate: res.headers['www-authenticate'], body: res.json() }
}

t.test('a valid access token is accepted', async (t) => {
  const { ctx, access } = await setup(t)
  t.equal((await me(ctx, access)).status, 200)
})

t.test('each attack is refused with 401 and WWW-Authenticate', async (t) => {
  const { ctx, access, refresh } = await setup(t)
  const header = decodeProtectedHeader(access)
  const claims = decodeJwt(access)
  const [h, p] = access.split('.') as [string, string, string]
  const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const attackerJwk = await exportJWK(attacker.publicKey)
  const signWith = (hdr: object, payload: object, key = attacker.privateKey): string => {
    const input = `${b64(hdr)}.${b64(payload)}`
    return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`
  }
  const publicPem = ctx.deps.keyring.get(String(header.kid))?.publicPem ?? ''
  const hsInput = `${b64({ alg: 'HS256', kid: header.kid, typ: 'at+jwt' })}.${p}`
  const attacks: Record<string, string> = {
    'a refresh token': refresh,
    'alg none': `${b64({ alg: 'none', kid: header.kid, typ: 'at+jwt' })}.${p}.`,
    'HS256 keyed with our public key': `${hsInput}.${createHmac('sha256', publicPem).update(hsInput).digest('base64url')}`,
    'an unknown kid': signWith({ alg: 'RS256', kid: 'unknown-kid', typ: 'at+jwt' }, claims),
    'a foreign key under our kid': signWith({ alg: 'RS256', kid: header.kid, typ: 'at+jwt' }, claims),
    'an embedded jwk': resignWithHeader(ctx, access, { ...header, jwk: attackerJwk }),
    'a jku header': resignWithHeader(ctx, access, { ...header, jku: 'https://attacker.example/jwks.json' }),
    'an x5u header': resignWithHeader(ctx, access, { ...header, x5u: 'https://attacker.example/cert.pem' }),
    'typ JWT': resignWithHeader(ctx, access, { ...header, typ: 'JWT' }),
    'no typ': resignWithHeader(ctx, access, { alg: 'RS256', kid: header.kid }),
    'another issuer': resignWithHeader(ctx, access, header, { ...claims, iss: 'https://evil.example' }),
    'another audience': resignWithHeader(ctx, access, header, { ...claims, aud: 'billing' }),
    'an expired token': resignWithHeader(ctx, access, header, { ...claims, iat: 1000, exp: 2000 }),
    'a tampered payload': `${h}.${b64({ ...claims, sub: '00000000-0000-0000-0000-000000000000' })}.${access.split('.')[2] ?? ''}`,
    garbage: 'not.a.token',
    'two parts': `${h}.${p}`
  }
  for (const [name, token] of Object.entries(attacks)) {
    const res = await me(ctx, token)
    t.equal(res.status, 401, name)
    t.equal(res.wwwAuthenticate, 'Bearer error="invalid_token"', `${name}: WWW-Authenticate`)
    t.equal(res.body.title, 'Unauthorized', `${name}: problem+json`)
  }
  const missing = await ctx.app.inject({ method: 'GET', url: '/v1/me' })
  t.equal(missing.statusCode, 401)
  t.equal(missing.headers['www-authenticate'], 'Bearer error="invalid_token"')
  const basic = await ctx.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: 'Basic bWFsbG9yeTpwdw==' } })
  t.equal(basic.statusCode, 401)
})

t.test('a token whose session ended is refused by Tessera itself', async (t) => {
  const { ctx, access } = await setup(t)
  const out = await ctx.app.inject({ method: 'POST', url: '/v1/logout', headers: { authorization: `Bearer ${access}` } })
  t.equal(out.statusCode, 200)
  t.equal((await me(ctx, access)).status, 401)
})

t.test('TESSERA_AUDIENCE names several audiences: every access token carries all of them, and /v1 takes it', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_AUDIENCE: 'api,billing' })
  await signUp(ctx.app, 'mallory', PASSWORD)
  const tokens = await login(ctx.app, 'mallory', PASSWORD)
  t.same(decodeJwt(tokens.access_token).aud, ['api', 'billing'], 'the login\'s token, in the order set')
  const refreshed = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token } })
  t.equal(refreshed.statusCode, 200)
  t.same(decodeJwt(String(refreshed.json().access_token)).aud, ['api', 'billing'], 'and the refresh\'s')
  t.equal((await me(ctx, tokens.access_token)).status, 200)
})

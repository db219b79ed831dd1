import t from 'tap'
import { execFile } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyRequest } from 'fastify'
import fastifyJwt, { type TokenOrHeader } from '@fastify/jwt'
import { existsSync } from 'node:fs'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import buildGetJwks from 'get-jwks'
import { createRemoteJWKSet, jwtVerify, SignJWT } from 'jose'
import { createTestDatabase } from '../helpers/db.js'
import { runCli, startServer } from '../helpers/server.js'

const PASSWORD = 'correct horse battery'
const run = promisify(execFile)
// Debian's python3-jwt lives with the system interpreter; a python3 earlier on PATH may not see it.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

t.test('siblings verify access tokens from the JWKS alone: jose, @fastify/jwt + get-jwks, PyJWT', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const server = await startServer(t, { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_ISSUER: 'http://tessera.test' })
  const jwksUrl = `${server.url}/.well-known/jwks.json`
  const post = async (path: string, body: object): Promise<Record<string, string>> =>
    await (await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Record<string, string>
  await post('/v1/users', { username: 'sibling', password: PASSWORD })
  const tokens = await post('/oauth/token', { grant_type: 'password', username: 'sibling', password: PASSWORD })
  const access = tokens.access_token ?? ''
  const refreshToken = tokens.refresh_token ?? ''
  const registered = await runCli(['clients', 'create', 'billing', '--confidential', '--scopes', 'notes:read', '--resources', 'urn:tessera:notes', '--json'], { DATABASE_URL: databaseUrl })
  t.equal(registered.code, 0, registered.stderr)
  const service = await post('/oauth/token', { grant_type: 'client_credentials', client_id: 'billing', client_secret: JSON.parse(registered.stdout).client_secret, resource: 'urn:tessera:notes' })
  const serviceAccess = service.access_token ?? ''

  t.test('jose createRemoteJWKSet + jwtVerify', async (t) => {
    const jwks = createRemoteJWKSet(new URL(jwksUrl))
    const { payload, protectedHeader } = await jwtVerify(access, jwks, { issuer: 'http://tessera.test', audience: 'api', typ: 'at+jwt', algorithms: ['RS256'] })
    t.equal(protectedHeader.typ, 'at+jwt')
    t.equal(payload.iss, 'http://tessera.test')
    await t.rejects(jwtVerify(refreshToken, jwks, { issuer: 'http://tessera.test', audience: 'api', typ: 'at+jwt' }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'typ' }, 'a refresh token fails a sibling\'s checks (its typ)')
    const { payload: servicePayload } = await jwtVerify(serviceAccess, jwks, { issuer: 'http://tessera.test', audience: 'urn:tessera:notes', typ: 'at+jwt', algorithms: ['RS256'] })
    t.match(servicePayload, { sub: 'billing', client_id: 'billing', aud: 'urn:tessera:notes', scope: 'notes:read' }, 'a client_credentials token, audience = the resource')
    t.notOk('sid' in servicePayload, 'no session')
    await t.rejects(jwtVerify(serviceAccess, jwks, { issuer: 'http://tessera.test', audience: 'api' }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' }, 'not for the default audience')
  })

  t.test('@fastify/jwt + get-jwks in a separate Fastify app', async (t) => {
    const getJwks = buildGetJwks({ providerDiscovery: false, jwksPath: '/.well-known/jwks.json' })
    const sibling = Fastify()
    await sibling.register(fastifyJwt, {
      decode: { complete: true },
      secret: async (_request: FastifyRequest, token: TokenOrHeader) => {
        const { header } = token as { header: { kid: string, alg: string } }
        return await getJwks.getPublicKey({ kid: header.kid, alg: header.alg, domain: server.url })
      },
      verify: { allowedIss: 'http://tessera.test', allowedAud: 'api', algorithms: ['RS256'] }
    })
    sibling.get('/resource', async (request) => {
      const decoded = sibling.jwt.decode<{ header: { typ?: string } }>(request.headers.authorization?.slice(7) ?? '', { complete: true })
      if (decoded?.header.typ !== 'at+jwt') throw Object.assign(new Error('not an access token'), { statusCode: 401 })
      return await request.jwtVerify()
    })
    t.teardown(async () => { await sibling.close() })
    const ok = await sibling.inject({ method: 'GET', url: '/resource', headers: { authorization: `Bearer ${access}` } })
    t.equal(ok.statusCode, 200)
    t.equal(ok.json().iss, 'http://tessera.test')
    const refused = await sibling.inject({ method: 'GET', url: '/resource', headers: { authorization: `Bearer ${refreshToken}` } })
    t.equal(refused.statusCode, 401)
  })

  t.test('Python PyJWT PyJWKClient', async (t) => {
    const script = [
      'import jwt, sys',
      'client = jwt.PyJWKClient(sys.argv[1])',
      'key = client.get_signing_key_from_jwt(sys.argv[2])',
      'claims = jwt.decode(sys.argv[2], key.key, algorithms=["RS256"], audience="api", issuer="http://tessera.test")',
      'assert jwt.get_unverified_header(sys.argv[2])["typ"] == "at+jwt"',
      'print(claims["sub"])'
    ].join('\n')
    const { stdout } = await run(PYTHON, ['-c', script, jwksUrl, access])
    t.match(stdout.trim(), /^[0-9a-f-]{36}$/)
    await t.rejects(run(PYTHON, ['-c', script, jwksUrl, refreshToken]), { message: /InvalidAudienceError/ }, 'PyJWT refuses the refresh token (aud)')
    const forNotes = script.replace('audience="api"', 'audience="urn:tessera:notes"')
    t.equal((await run(PYTHON, ['-c', forNotes, jwksUrl, serviceAccess])).stdout.trim(), 'billing', 'PyJWT verifies a client_credentials token with audience = the resource')
    await t.rejects(run(PYTHON, ['-c', script, jwksUrl, serviceAccess]), { message: /InvalidAudienceError/ }, 'and refuses it for another audience')
  })

  t.test('the jose code of docs/integrators.md, as written: 401 for what the token did, 503 for a kid its set may predate or a JWKS out of reach', async (t) => {
    const doc = await readFile(fileURLToPath(new URL('../../../../docs/integrators.md', import.meta.url)), 'utf8')
    const section = doc.slice(doc.indexOf('## Node: jose'))
    const code = /```js\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
    t.match(code, /export async function verifyAccessToken/, 'the section\'s code block')
    // Beside node_modules' jose, as a sibling would have it: the module is loaded from the repository.
    const load = async (url: string, name: string): Promise<{ verifyAccessToken: (token: string) => Promise<Record<string, unknown>>, KeysUnavailable: new () => Error }> => {
      const file = fileURLToPath(new URL(`../../${name}.mjs`, import.meta.url))
      await writeFile(file, code.replace("'https://auth.example.com/.well-known/jwks.json'", `'${url}'`).replace("issuer: 'https://auth.example.com'", "issuer: 'http://tessera.test'"))
      t.teardown(async () => { await rm(file, { force: true }) })
      return await import(file)
    }
    const verifier = await load(jwksUrl, `.jose-doc-${process.pid}`)
    const verdict = async (token: string): Promise<string> => {
      try {
        return `200 ${String((await verifier.verifyAccessToken(token)).sub)}`
      } catch (err) {
        return err instanceof verifier.KeysUnavailable ? '503' : `401 ${(err as Error).constructor.name}`
      }
    }
    const forged = (header: Record<string, unknown>, claims: Record<string, unknown> = {}): string =>
      [header, { iss: 'http://tessera.test', aud: 'api', sub: 'x', ...claims }].map((part) => Buffer.from(JSON.stringify(part)).toString('base64url')).join('.') + '.c2ln'
    t.match(await verdict(access), /^200 [0-9a-f-]{36}$/, 'the access token')
    t.equal(await verdict(refreshToken), '401 JWTClaimValidationFailed', 'a refresh token')
    t.equal(await verdict(serviceAccess), '401 JWTClaimValidationFailed', 'another audience\'s')
    t.equal(await verdict('not a token'), '401 JWSInvalid', 'no JWS at all')
    t.equal(await verdict(forged({ alg: 'RS256', typ: 'at+jwt' })), '401 JWSInvalid', 'no kid')
    const kid = JSON.parse(Buffer.from(access.split('.')[0] ?? '', 'base64url').toString()).kid as string
    t.equal(await verdict(forged({ alg: 'RS256', typ: 'at+jwt', kid, crit: ['x'], x: 1 })), '401 JOSENotSupported', 'a crit member jose does not know: the token\'s fault, not the JWKS\'s')
    t.equal(await verdict(forged({ alg: 'RS256', typ: 'at+jwt', kid: 'no-such-kid' })), '503', 'a kid the set, fetched moments ago, lacks: it may be newer than the set')
    const fresh = await load(jwksUrl, `.jose-doc-fresh-${process.pid}`)
    try {
      await fresh.verifyAccessToken(forged({ alg: 'RS256', typ: 'at+jwt', kid: 'no-such-kid' }))
      t.fail('an unknown kid verified')
    } catch (err) {
      t.equal((err as Error).constructor.name, 'JWKSNoMatchingKey', 'a kid a set fetched for it lacks: the token\'s fault')
    }
    // The gateway's copy of the JWKS can be 2 s old: right after keys rotate --now it lacks the key that signs now.
    const behindGateway = await load(jwksUrl, `.jose-doc-gateway-${process.pid}`)
    const recent = forged({ alg: 'RS256', typ: 'at+jwt', kid: 'no-such-kid' }, { iat: Math.floor(Date.now() / 1000) })
    t.equal(await behindGateway.verifyAccessToken(recent).then(() => 'verified', (err: unknown) => err instanceof behindGateway.KeysUnavailable ? '503' : '401'), '503',
      'a kid a set fetched for it lacks, on a token issued since that set may have been copied: it may be newer than the set')
    const blind = await load('http://127.0.0.1:9/.well-known/jwks.json', `.jose-doc-blind-${process.pid}`)
    const unreachable = await blind.verifyAccessToken(access).then(() => undefined, (err: unknown) => err)
    t.ok(unreachable instanceof blind.KeysUnavailable, 'a JWKS that cannot be fetched is not the token\'s fault')
  })

  t.test('the PyJWT code of docs/integrators.md, as written: 401 for what the token did, 503 for a JWKS out of reach', async (t) => {
    const doc = await readFile(fileURLToPath(new URL('../../../../docs/integrators.md', import.meta.url)), 'utf8')
    const section = doc.slice(doc.indexOf('## Python: PyJWT'))
    const code = /```python\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
    t.match(code, /def verify_access_token/, 'the section\'s code block')
    const driver = [
      'import sys',
      'for token in sys.argv[2:]:',
      '    try:',
      '        print("200", verify_access_token(token)["sub"])',
      '    except KeysUnavailable:',
      '        print("503")',
      '    except jwt.InvalidTokenError as err:',
      '        print("401", type(err).__name__)'
    ].join('\n')
    const script = code.replace('"https://auth.example.com"', '"http://tessera.test"').replace('f"{ISSUER}/.well-known/jwks.json"', 'sys.argv[1]')
    const verdicts = async (url: string, ...tokens: string[]): Promise<string[]> =>
      (await run(PYTHON, ['-c', `import sys\n${script}\n${driver}`, url, ...tokens])).stdout.trim().split('\n')
    const forged = (header: Record<string, unknown>, claims: Record<string, unknown> = {}): string =>
      [header, { iss: 'http://tessera.test', aud: 'api', sub: 'x', ...claims }].map((part) => Buffer.from(JSON.stringify(part)).toString('base64url')).join('.') + '.c2ln'
    const recent = forged({ alg: 'RS256', typ: 'at+jwt', kid: 'no-such-kid' }, { iat: Math.floor(Date.now() / 1000) })
    const six = await verdicts(jwksUrl, access, refreshToken, serviceAccess, forged({ alg: 'RS256', typ: 5, kid: 'k' }), forged({ alg: 'RS256', typ: 'at+jwt', kid: 'no-such-kid' }), recent)
    t.equal(six.length, 6, 'one verdict per token')
    t.match(six, [
      /^200 [0-9a-f-]{36}$/,
      '401 InvalidTokenError',
      '401 InvalidAudienceError',
      '401 InvalidTokenError',
      '401 InvalidTokenError',
      '503'
    ], 'the access token; refused: a refresh token, another audience\'s, a typ that is not a string, an unknown kid; and 503 for an unknown kid on a token issued since the set (the gateway\'s copy, 2 s old) may have been copied')
    t.same(await verdicts('http://127.0.0.1:9/.well-known/jwks.json', access), ['503'], 'a JWKS that cannot be fetched is not the token\'s fault')
    t.same(await verdicts(jwksUrl.replace('/.well-known/jwks.json', '/metrics'), access), ['503'], 'nor is one that answers something other than JSON')
    t.same(await verdicts('http://127.0.0.1:9/.well-known/jwks.json', forged({ alg: 'RS256', typ: 'at+jwt' })), ['401 InvalidTokenError'], 'a token without a kid is refused before any fetch')
    // A JWKS URL that answers JSON other than an object (a misrouted API, a proxy's page): PyJWT 2.6 fails on it with AttributeError.
    const notAnObject = createServer((_request, response) => { response.setHeader('content-type', 'application/json').end('["not", "a", "key set"]') })
    await new Promise<void>((resolve) => notAnObject.listen(0, '127.0.0.1', resolve))
    t.teardown(() => notAnObject.close())
    const { port } = notAnObject.address() as AddressInfo
    t.same(await verdicts(`http://127.0.0.1:${port}/.well-known/jwks.json`, access), ['503'], 'nor one that answers JSON other than an object')
  })
})

t.test('the jose, @fastify/jwt and PyJWT code of docs/integrators.md, as written, refuse an iat further ahead than the 30 s they allow exp, as notes does', async (t) => {
  // A key and a JWKS of the test's own: a token Tessera would never sign, issued in the future.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const kid = 'iat-ahead'
  const jwksServer = createServer((_request, response) => {
    response.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }] }))
  })
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => jwksServer.close())
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`
  const now = Math.floor(Date.now() / 1000)
  const issued = async (secondsAhead: number): Promise<string> => await new SignJWT({ sub: 'ahead' })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid }).setIssuer('http://tessera.test').setAudience('api').setIssuedAt(now + secondsAhead).setExpirationTime(now + 600).sign(privateKey)
  const within = await issued(20)
  const beyond = await issued(120)
  // A kid the set lacks on a token issued further ahead than the skew: no newer key explains it, so 401 at once, not a 503 until its iat comes.
  const unknownAhead = await new SignJWT({ sub: 'ahead' })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'no-such-kid' }).setIssuer('http://tessera.test').setAudience('api').setIssuedAt(now + 3600).setExpirationTime(now + 7200).sign(privateKey)
  const doc = await readFile(fileURLToPath(new URL('../../../../docs/integrators.md', import.meta.url)), 'utf8')
  const block = (heading: string, lang: string): string => new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(doc.slice(doc.indexOf(heading)))?.[1] ?? ''
  const ours = (code: string): string => code.replace("'https://auth.example.com/.well-known/jwks.json'", `'${jwksUrl}'`).replaceAll("'https://auth.example.com'", "'http://tessera.test'")
  // Beside node_modules, as a sibling would have them: each module is loaded from the repository.
  const load = async <T>(name: string, code: string): Promise<T> => {
    const file = fileURLToPath(new URL(`../../.${name}-${process.pid}.mjs`, import.meta.url))
    await writeFile(file, code)
    t.teardown(async () => { await rm(file, { force: true }) })
    return await import(file) as T
  }

  const jose = await load<{ verifyAccessToken: (token: string) => Promise<Record<string, unknown>> }>('jose-doc-iat', ours(block('## Node: jose', 'js')))
  const joseVerdict = async (token: string): Promise<string> => await jose.verifyAccessToken(token).then((claims) => `200 ${String(claims.sub)}`, (err: Error) => `401 ${err.constructor.name}`)
  t.equal(await joseVerdict(within), '200 ahead', 'jose: an iat 20 s ahead, within the skew')
  t.equal(await joseVerdict(beyond), '401 JWTClaimValidationFailed', 'jose: an iat 120 s ahead')
  t.equal(await joseVerdict(unknownAhead), '401 JWKSNoMatchingKey', 'jose: an unknown kid on a token issued an hour ahead (not KeysUnavailable, a 503)')

  const fastifyCode = block('## Node: Fastify with @fastify/jwt', 'js')
  t.match(fastifyCode, /await app\.register\(fastifyJwt/, 'the section\'s code block')
  const { app } = await load<{ app: ReturnType<typeof Fastify> }>('fastify-doc-iat', `import Fastify from 'fastify'\nexport const app = Fastify()\nconst listNotes = (sub) => ({ sub })\n${ours(fastifyCode)}`)
  t.teardown(async () => { await app.close() })
  const fastifyVerdict = async (token: string): Promise<number> => (await app.inject({ method: 'GET', url: '/notes', headers: { authorization: `Bearer ${token}` } })).statusCode
  t.equal(await fastifyVerdict(within), 200, '@fastify/jwt: an iat 20 s ahead, within the skew')
  t.equal(await fastifyVerdict(beyond), 401, '@fastify/jwt: an iat 120 s ahead')
  t.equal(await fastifyVerdict(unknownAhead), 401, '@fastify/jwt: an unknown kid on a token issued an hour ahead (not a 503)')

  const python = block('## Python: PyJWT', 'python').replace('"https://auth.example.com"', '"http://tessera.test"').replace('f"{ISSUER}/.well-known/jwks.json"', 'sys.argv[1]')
  const driver = 'for token in sys.argv[2:]:\n    try:\n        print("200", verify_access_token(token)["sub"])\n    except KeysUnavailable:\n        print("503")\n    except jwt.InvalidTokenError as err:\n        print("401", type(err).__name__)'
  const pyjwt = (await run(PYTHON, ['-c', `import sys\n${python}\n${driver}`, jwksUrl, within, beyond, unknownAhead])).stdout.trim().split('\n')
  t.same(pyjwt, ['200 ahead', '401 ImmatureSignatureError', '401 InvalidTokenError'], 'PyJWT: the same two verdicts, by its leeway, and an unknown kid on a token issued an hour ahead 401, not 503')
})

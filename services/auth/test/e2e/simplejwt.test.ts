/**
 * Issue 15, clients and resource services: the same request list against a
 * real DRF + SimpleJWT app (Django's test client, in /usr/bin/python3) and
 * against Tessera's compat routes; and a DRF view behind SimpleJWT's own
 * JWTAuthentication, configured by settings alone, judging Tessera's tokens.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { InjectOptions } from 'fastify'
import { buildTestApp, signUp, type TestApp } from '../helpers/app.js'

const run = promisify(execFile)
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
const ORACLE = fileURLToPath(new URL('../helpers/django_oracle.py', import.meta.url))
const PASSWORD = 'correct horse battery'

interface Answer { status: number, body: Record<string, unknown>, www_authenticate?: string | null }
/** A file part of a multipart body. */
interface Upload { file: string, content: string }
type Value = string | string[] | { $: string } | Upload
/** A JSON POST unless it names its encoding, a raw body, or another method; with its headers, if any. */
interface Step { path: string, method?: 'GET' | 'PUT' | 'DELETE', body?: Record<string, Value>, encoding?: 'form' | 'multipart', raw?: { type: string, body: string }, headers?: Record<string, string>, save?: Record<string, string>, compare: 'body' | 'keys' }

const part = (name: string, value: string, extra = ''): string => `--B\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n\r\n${value}\r\n`
const MULTIPART = 'multipart/form-data; boundary=B'
/** HTTP Basic for a proxy in front, not for Tessera: `staging:secret`. */
const BASIC = `Basic ${Buffer.from('staging:secret').toString('base64')}`

async function oracle (t: Test, mode: string, args: string[], spec: unknown): Promise<Answer[]> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-drf-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(join(dir, 'spec.json'), JSON.stringify(spec))
  const { stdout } = await run(PYTHON, [ORACLE, mode, ...args, join(dir, 'spec.json')])
  return JSON.parse(stdout) as Answer[]
}

const STEPS: Step[] = [
  { path: '/api/token/', body: {}, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice' }, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: '' }, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: 'wrong password' }, compare: 'body' },
  { path: '/api/token/', body: { username: 'nobody', password: PASSWORD }, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD }, save: { r1: 'refresh', a1: 'access' }, compare: 'keys' },
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD }, encoding: 'form', save: { r9: 'refresh' }, compare: 'keys' },
  { path: '/api/token/verify/', body: { token: { $: 'a1' } }, compare: 'body' },
  { path: '/api/token/verify/', body: { token: { $: 'r1' } }, compare: 'body' },
  { path: '/api/token/verify/', body: { token: 'not.a.token' }, compare: 'body' },
  { path: '/api/token/verify/', body: {}, compare: 'body' },
  { path: '/api/token/refresh/', body: {}, compare: 'body' },
  { path: '/api/token/refresh/', body: { refresh: 'garbage' }, compare: 'body' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'a1' } }, compare: 'keys' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'r1' } }, save: { r2: 'refresh' }, compare: 'keys' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'r9' } }, encoding: 'form', compare: 'keys' },
  { path: '/api/token/blacklist/', body: { refresh: { $: 'r2' } }, compare: 'body' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'r2' } }, compare: 'body' },
  { path: '/api/token/blacklist/', body: { refresh: 'garbage' }, compare: 'body' },
  { path: '/api/token/blacklist/', body: {}, compare: 'body' },
  // NUL: DRF's CharField refuses it in every field; Postgres could not store it.
  { path: '/api/token/', body: { username: '\u0000', password: PASSWORD }, compare: 'body' },
  { path: '/api/token/', body: { username: 'al\u0000ice', password: '\u0000' }, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: 'a\u0000' }, encoding: 'form', compare: 'body' },
  { path: '/api/token/refresh/', body: { refresh: '\u0000' }, compare: 'body' },
  { path: '/api/token/verify/', body: { token: 'x\u0000' }, compare: 'body' },
  { path: '/api/token/blacklist/', body: { refresh: '\u0000' }, compare: 'body' },
  // A field sent twice: a form's is its last value (Django's QueryDict); a JSON list is not a string.
  { path: '/api/token/', body: { username: ['nobody', 'alice'], password: PASSWORD }, encoding: 'form', compare: 'keys' },
  { path: '/api/token/', body: { username: ['alice'], password: PASSWORD }, compare: 'body' },
  // multipart/form-data, as a browser's FormData and Django's test client send it: DRF's default parsers take it.
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD }, encoding: 'multipart', save: { r8: 'refresh' }, compare: 'keys' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'r8' } }, encoding: 'multipart', compare: 'keys' },
  { path: '/api/token/', body: { username: 'alice' }, encoding: 'multipart', compare: 'body' },
  { path: '/api/token/', body: { username: ' ', password: PASSWORD }, encoding: 'multipart', compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: 'a\u0000' }, encoding: 'multipart', compare: 'body' },
  { path: '/api/token/', body: { username: ['nobody', 'alice'], password: PASSWORD }, encoding: 'multipart', compare: 'keys' },
  { path: '/api/token/', body: { username: { file: 'u.txt', content: 'alice' }, password: PASSWORD }, encoding: 'multipart', compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD, avatar: { file: 'a.png', content: 'png' } }, encoding: 'multipart', compare: 'keys' },
  { path: '/api/token/', raw: { type: 'multipart/form-data', body: part('username', 'alice') }, compare: 'body' },
  { path: '/api/token/', raw: { type: MULTIPART, body: 'garbage' }, compare: 'body' },
  { path: '/api/token/', raw: { type: MULTIPART, body: '' }, compare: 'body' },
  { path: '/api/token/', raw: { type: MULTIPART, body: part('username', 'alice') + part('password', PASSWORD) + '--B' }, compare: 'keys' },
  { path: '/api/token/', raw: { type: MULTIPART, body: part('username', 'alice') + part('password', PASSWORD) + '--B\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nxx' }, compare: 'keys' },
  { path: '/api/token/', raw: { type: MULTIPART, body: part('username', 'alice', '; filename=""') + part('password', PASSWORD) + '--B--\r\n' }, compare: 'keys' },
  { path: '/api/token/', raw: { type: MULTIPART, body: part(' username ', 'alice') + part('password', PASSWORD) + '--B--\r\n' }, compare: 'keys' },
  { path: '/api/token/', raw: { type: MULTIPART, body: '--B\r\nContent-Disposition: form-data\r\n\r\nalice\r\n' + part('password', PASSWORD) + '--B--\r\n' }, compare: 'body' },
  { path: '/api/token/', raw: { type: MULTIPART, body: part('username', 'alice') + '--B\r\nContent-Disposition: form-data; name="password"\r\nContent-Type: application/json\r\n\r\n"x"\r\n--B--\r\n' }, compare: 'body' },
  // JSON as DRF's parser reads it: an empty body is no data, a body that is not an object is non_field_errors.
  { path: '/api/token/', raw: { type: 'application/json', body: '' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: 'null' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: '[]' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: '"x"' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: '1' }, compare: 'body' },
  { path: '/api/token/refresh/', raw: { type: 'application/json', body: '1.5' }, compare: 'body' },
  { path: '/api/token/verify/', raw: { type: 'application/json', body: 'true' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: '{' }, compare: 'keys' },
  { path: '/api/token/', raw: { type: 'application/json; charset=utf-8', body: `{"username":"alice","password":"${PASSWORD}"}` }, compare: 'keys' },
  { path: '/api/token/', raw: { type: 'application/json', body: `{"username":"bob","username":"alice","password":"${PASSWORD}"}` }, compare: 'keys' },
  // A __proto__ member is dropped like any member the view does not read; lone surrogates are refused by DRF's CharField.
  { path: '/api/token/', raw: { type: 'application/json', body: `{"username":"alice","password":"${PASSWORD}","x":{"__proto__":1}}` }, compare: 'keys' },
  { path: '/api/token/', raw: { type: 'application/json', body: `{"__proto__":{"username":"alice"},"password":"${PASSWORD}"}` }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: '{"username":"\\ud800","password":"x\\udc00y"}' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: '{"username":"a\\u0000\\udfff","password":"\\ud83d\\ude00 ok"}' }, compare: 'body' },
  // A number is read as its text; anything else not a string is refused.
  { path: '/api/token/', raw: { type: 'application/json', body: '{"username":"alice","password":123}' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: '{"username":"alice","password":1.5}' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: `{"username":true,"password":"${PASSWORD}"}` }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/json', body: `{"username":{},"password":"${PASSWORD}"}` }, compare: 'body' },
  // Forms, Content-Types, and values as DRF's CharField takes them (trimmed of any Unicode space, no length limit of its own).
  { path: '/api/token/', raw: { type: 'application/x-www-form-urlencoded', body: '' }, compare: 'body' },
  // A % that begins no escape is Tessera's 400 (test/http/form-body.test.ts), where Django reads it as itself; escaped, both read it.
  { path: '/api/token/', raw: { type: 'application/x-www-form-urlencoded', body: 'username=%25zz&password=pw' }, compare: 'body' },
  { path: '/api/token/', raw: { type: 'application/x-www-form-urlencoded', body: 'username=alice&password=p+w' }, compare: 'body' },
  { path: '/api/token/', raw: { type: '', body: `{"username":"alice","password":"${PASSWORD}"}` }, compare: 'keys' },
  { path: '/api/token/', raw: { type: 'Application/JSON', body: `{"username":"alice","password":"${PASSWORD}"}` }, compare: 'keys' },
  { path: '/api/token/', raw: { type: 'application/vnd.api+json', body: `{"username":"alice","password":"${PASSWORD}"}` }, compare: 'body' },
  { path: '/api/token/refresh/', raw: { type: 'text/plain; charset=utf-8', body: 'refresh=x' }, compare: 'body' },
  { path: '/api/token/', body: { username: 'a'.repeat(300), password: PASSWORD }, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: 'a'.repeat(2000) }, compare: 'body' },
  { path: '/api/token/verify/', body: { token: '' }, compare: 'body' },
  { path: '/api/token/refresh/', body: { refresh: '  ' }, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice\u00a0', password: PASSWORD }, compare: 'keys' },
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD + ' ' }, compare: 'keys' },
  { path: '/api/token/', body: { username: '\talice\n', password: PASSWORD }, compare: 'keys' },
  // Blacklist takes a refresh token only; verify refuses a spent refresh token (used, or its session ended) as SimpleJWT refuses a blacklisted one.
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD }, save: { p1: 'refresh', pa: 'access' }, compare: 'keys' },
  { path: '/api/token/blacklist/', body: { refresh: { $: 'pa' } }, compare: 'keys' },
  { path: '/api/token/verify/', body: { token: { $: 'pa' } }, compare: 'body' },
  { path: '/api/token/blacklist/', body: { refresh: { $: 'p1' } }, compare: 'body' },
  { path: '/api/token/blacklist/', body: { refresh: { $: 'p1' } }, compare: 'body' },
  { path: '/api/token/verify/', body: { token: { $: 'p1' } }, compare: 'body' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'p1' } }, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD }, save: { q1: 'refresh' }, compare: 'keys' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'q1' } }, save: { q2: 'refresh' }, compare: 'keys' },
  { path: '/api/token/verify/', body: { token: { $: 'q1' } }, compare: 'body' },
  { path: '/api/token/verify/', body: { token: { $: 'q2' } }, compare: 'body' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'q2' } }, compare: 'keys' },
  { path: '/api/token/verify/', body: { token: 'a.b.c' }, compare: 'body' },
  // Fields a view does not read are ignored.
  { path: '/api/token/refresh/', body: { refresh: 'a.b.c', extra: 'x' }, compare: 'body' },
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD, extra: 'x' }, compare: 'keys' },
  // SimpleJWT's views read no Authorization header: one meant for a proxy in front (nginx auth_basic) or set
  // globally in a client's HTTP library changes nothing, a malformed one included.
  { path: '/api/token/', body: { username: 'alice', password: PASSWORD }, headers: { authorization: BASIC }, save: { b1: 'refresh', ba: 'access' }, compare: 'keys' },
  { path: '/api/token/', body: { username: 'alice', password: 'wrong password' }, headers: { authorization: 'Basic !!!' }, compare: 'body' },
  { path: '/api/token/refresh/', body: { refresh: { $: 'b1' } }, headers: { authorization: BASIC }, save: { b2: 'refresh' }, compare: 'keys' },
  { path: '/api/token/verify/', body: { token: { $: 'ba' } }, headers: { authorization: BASIC }, compare: 'body' },
  { path: '/api/token/blacklist/', body: { refresh: { $: 'b2' } }, headers: { authorization: 'Bearer x' }, compare: 'body' },
  // A method the view does not serve: DRF's own 405.
  { path: '/api/token/', method: 'GET', compare: 'body' },
  { path: '/api/token/refresh/', method: 'PUT', compare: 'body' },
  { path: '/api/token/blacklist/', method: 'DELETE', compare: 'body' }
]

type Sent = Record<string, string | string[] | Upload>

/** Each field as a name and one value: a list repeats its name. */
function entriesOf (body: Sent): Array<[string, string | Upload]> {
  return Object.entries(body).flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((one): [string, string | Upload] => [name, one]))
}

/** A step as Tessera receives it: a JSON, form, multipart (as fetch encodes a FormData) or raw POST, or a bodiless request of another method. */
async function requestOf (step: Step, body: Sent): Promise<InjectOptions> {
  const headers = step.headers ?? {}
  if (step.method !== undefined) return { method: step.method, url: step.path, headers }
  if (step.raw !== undefined) return { method: 'POST', url: step.path, headers: { ...headers, 'content-type': step.raw.type }, payload: step.raw.body }
  if (step.encoding === 'form') {
    const form = new URLSearchParams(entriesOf(body).map(([name, one]): [string, string] => [name, String(one)]))
    return { method: 'POST', url: step.path, headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, payload: form.toString() }
  }
  if (step.encoding === 'multipart') {
    const data = new FormData()
    for (const [name, one] of entriesOf(body)) {
      if (typeof one === 'string') data.append(name, one)
      else data.append(name, new Blob([one.content]), one.file)
    }
    const encoded = new Request('http://tessera.test/', { method: 'POST', body: data })
    return { method: 'POST', url: step.path, headers: { ...headers, 'content-type': encoded.headers.get('content-type') ?? '' }, payload: Buffer.from(await encoded.arrayBuffer()) }
  }
  return { method: 'POST', url: step.path, headers, payload: body }
}

async function tessera (ctx: TestApp, steps: Step[]): Promise<Answer[]> {
  const saved: Record<string, string> = {}
  const answers: Answer[] = []
  for (const step of steps) {
    const body: Sent = Object.fromEntries(Object.entries(step.body ?? {}).map(([k, v]) => [k, typeof v === 'object' && '$' in v ? saved[v.$] ?? '' : v]))
    const res = await ctx.app.inject(await requestOf(step, body))
    const answer = res.json() as Record<string, unknown>
    for (const [name, key] of Object.entries(step.save ?? {})) saved[name] = String(answer[key])
    answers.push({ status: res.statusCode, body: answer, www_authenticate: String(res.headers['www-authenticate'] ?? '') || null })
  }
  return answers
}

t.test('the compat routes answer what SimpleJWT answers, request for request', async (t) => {
  // SimpleJWT has no grace window; within Tessera's, a refresh token used moments ago still verifies (the next test),
  // so the side by side runs without one, on a clock that moves past the instant of each use.
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_REFRESH_GRACE: '0' }, { realClock: true })
  await signUp(ctx.app, 'alice', PASSWORD)
  const drf = await oracle(t, 'simplejwt', [], { users: [{ username: 'alice', password: PASSWORD }], requests: STEPS })
  const ours = await tessera(ctx, STEPS)
  STEPS.forEach((step, i) => {
    const theirs = drf[i]
    const mine = ours[i]
    const label = `${i + 1}: ${step.method ?? 'POST'} ${step.path} ${step.encoding ?? (step.raw === undefined ? 'json' : 'raw')} ${JSON.stringify(step.body ?? step.raw)}`
    t.equal(mine?.status, theirs?.status, `${label}: status`)
    t.equal(mine?.www_authenticate, theirs?.www_authenticate, `${label}: WWW-Authenticate`)
    if (step.compare === 'body') t.same(mine?.body, theirs?.body, `${label}: body`)
    else t.same(Object.keys(mine?.body ?? {}).sort(), Object.keys(theirs?.body ?? {}).sort(), `${label}: body keys`)
  })
  const ended = await ctx.connection.db.selectFrom('sessions').select('revoke_reason').where('revoke_reason', 'is not', null).execute()
  t.same(ended.map((s) => s.revoke_reason), ['revoke', 'revoke', 'revoke'], 'each blacklist that answered 200 ended its session through the same domain call as /oauth/revoke')
})

t.test('a JSON body that is not UTF-8 is refused (400, as DRF\'s parser refuses it), not read with U+FFFD', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  const payload = Buffer.concat([Buffer.from('{"username":"alice","password":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])
  const res = await ctx.app.inject({ method: 'POST', url: '/api/token/', headers: { 'content-type': 'application/json' }, payload })
  t.same([res.statusCode, res.json()], [400, { detail: 'the JSON body is not UTF-8' }])
})

t.test('off by default: no SimpleJWT routes, no extra claims', async (t) => {
  const ctx = await buildTestApp(t)
  await signUp(ctx.app, 'alice', PASSWORD)
  const res = await ctx.app.inject({ method: 'POST', url: '/api/token/', payload: { username: 'alice', password: PASSWORD } })
  t.equal(res.statusCode, 404)
  const tokens = (await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'alice', password: PASSWORD } })).json()
  const claims = JSON.parse(Buffer.from(String(tokens.access_token).split('.')[1] ?? '', 'base64url').toString())
  t.notOk('preferred_username' in claims)
  t.notOk('token_type' in claims)
})

t.test('verify does not tell the moment a refresh token is rotated: within the grace window it is live, past it blacklisted', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_REFRESH_GRACE: '10s' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const post = async (url: string, payload: object): Promise<{ status: number, body: unknown }> => {
    const res = await ctx.app.inject({ method: 'POST', url, payload })
    return { status: res.statusCode, body: res.json() }
  }
  const { refresh: first } = (await post('/api/token/', { username: 'alice', password: PASSWORD })).body as { refresh: string }
  const verify = async (): Promise<{ status: number, body: unknown }> => await post('/api/token/verify/', { token: first })
  t.same(await verify(), { status: 200, body: {} }, 'unused')
  const rotated = await post('/api/token/refresh/', { refresh: first })
  t.equal(rotated.status, 200)
  ctx.advance(9)
  t.same(await verify(), { status: 200, body: {} }, 'rotated 9 s ago: still live, as it still refreshes to the same successor')
  const again = await post('/api/token/refresh/', { refresh: first })
  t.equal((again.body as { refresh: string }).refresh, (rotated.body as { refresh: string }).refresh, 'it does: to the same successor')
  ctx.advance(1)
  t.same(await verify(), { status: 200, body: {} }, 'at the window\'s last instant too, where the refresh grant still answers the successor')
  ctx.advance(1)
  t.same(await verify(), { status: 400, body: { non_field_errors: ['Token is blacklisted'] } }, 'once the window has passed: blacklisted, as SimpleJWT says of a rotated token')
})

t.test('a client that resends its login\'s refresh token, as SimpleJWT\'s default (no rotation) lets it: Django with rotation and blacklisting on refuses it as Tessera does, so it is found before the move', async (t) => {
  const keep: Step[] = [
    { path: '/api/token/', body: { username: 'alice', password: PASSWORD }, save: { r1: 'refresh' }, compare: 'keys' },
    { path: '/api/token/refresh/', body: { refresh: { $: 'r1' } }, compare: 'keys' },
    { path: '/api/token/refresh/', body: { refresh: { $: 'r1' } }, compare: 'keys' }
  ]
  const spec = { users: [{ username: 'alice', password: PASSWORD }], requests: keep }
  const unrotated = await oracle(t, 'simplejwt', [], { ...spec, rotate: false })
  t.same(unrotated.map((a) => [a.status, Object.keys(a.body).sort()]), [[200, ['access', 'refresh']], [200, ['access']], [200, ['access']]],
    'SimpleJWT\'s default: refresh answers the access token alone, and the login\'s refresh token works again')
  const rotated = await oracle(t, 'simplejwt', [], spec)
  t.same(rotated.map((a) => [a.status, a.body.detail]), [[200, undefined], [200, undefined], [401, 'Token is blacklisted']],
    'rotation and blacklisting on in Django: the resent token is refused at the second refresh')

  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_REFRESH_GRACE: '10s' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const post = async (url: string, payload: object): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await ctx.app.inject({ method: 'POST', url, payload })
    return { status: res.statusCode, body: res.json() }
  }
  const { refresh } = (await post('/api/token/', { username: 'alice', password: PASSWORD })).body
  t.same(Object.keys((await post('/api/token/refresh/', { refresh })).body).sort(), ['access', 'refresh'], 'Tessera always answers a new refresh token')
  ctx.advance(300)
  t.same(await post('/api/token/refresh/', { refresh }), { status: 401, body: { detail: 'Token is blacklisted', code: 'token_not_valid' } },
    'resent one access-token life later: what Django answers with rotation on')
  const ended = await ctx.connection.db.selectFrom('sessions').select('revoke_reason').execute()
  t.same(ended.map((s) => s.revoke_reason), ['reuse'], 'and the session is ended as a stolen token\'s would be')
})

t.test('a grace as long as the refresh token\'s life lets a client that resends its login\'s refresh token go on until that token expires, as SimpleJWT\'s default does (the guide\'s way through the move, without reuse detection)', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_REFRESH_TTL: '1d', TESSERA_REFRESH_GRACE: '1d' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const post = async (url: string, payload: object): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await ctx.app.inject({ method: 'POST', url, payload })
    return { status: res.statusCode, body: res.json() }
  }
  const { refresh } = (await post('/api/token/', { username: 'alice', password: PASSWORD })).body
  const answers = []
  for (const after of [0, 300, 3600, 20 * 3600]) {
    ctx.advance(after)
    answers.push(await post('/api/token/refresh/', { refresh }))
  }
  t.same(answers.map((a) => a.status), [200, 200, 200, 200], 'the login\'s refresh token, sent again and again over most of a day, is answered each time')
  t.equal(new Set(answers.map((a) => a.body.refresh)).size, 1, 'with the same successor each time (the grace answer)')
  t.equal(new Set(answers.map((a) => a.body.access)).size, 4, 'and a fresh access token each time')
  const me = await ctx.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${String(answers[3]?.body.access)}` } })
  t.equal(me.statusCode, 200, 'the last access token works')
  ctx.advance(4 * 3600 + 1)
  t.same(await post('/api/token/refresh/', { refresh }), { status: 401, body: { detail: 'Token is invalid or expired', code: 'token_not_valid' } },
    'past the login\'s refresh token\'s own life (1d): expired, as SimpleJWT\'s REFRESH_TOKEN_LIFETIME ends it')
  const sessions = await ctx.connection.db.selectFrom('sessions').select('revoke_reason').execute()
  t.same(sessions.map((s) => s.revoke_reason), [null], 'and nothing was judged reuse')
})

t.test('a DRF view with SimpleJWT\'s JWTAuthentication, by settings alone, judges Tessera\'s tokens', async (t) => {
  const kek = randomBytes(32).toString('base64url')
  const env = { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_KEK: kek, TESSERA_ISSUER: 'http://tessera.test' }
  const ctx = await buildTestApp(t, env)
  await ctx.app.listen({ host: '127.0.0.1', port: 0 })
  const address = ctx.app.server.address()
  const base = typeof address === 'object' && address !== null ? `http://127.0.0.1:${address.port}` : ''
  const other = await buildTestApp(t, { ...env, TESSERA_AUDIENCE: 'another-service' }, { connection: ctx.connection })
  await signUp(ctx.app, 'alice', PASSWORD)
  const login = async (app: TestApp): Promise<{ access: string, refresh: string }> =>
    (await app.app.inject({ method: 'POST', url: '/api/token/', payload: { username: 'alice', password: PASSWORD } })).json()
  const pair = await login(ctx)
  const viaOauth = (await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'alice', password: PASSWORD } })).json()
  const refreshed = (await ctx.app.inject({ method: 'POST', url: '/api/token/refresh/', payload: { refresh: pair.refresh } })).json()
  const elsewhere = await login(other)
  ctx.advance(-3600)
  const stale = await login(ctx)
  ctx.advance(3610)
  // The issuer's clock 10 s ahead of the service's: PyJWT refuses an iat in its future without SimpleJWT's LEEWAY.
  const ahead = await login(ctx)
  ctx.advance(-10)

  const answers = await oracle(t, 'jwtauth', [`${base}/.well-known/jwks.json`, 'http://tessera.test', 'api'], {
    users: ['alice'],
    tokens: [pair.access, viaOauth.access_token, refreshed.access, pair.refresh, stale.access, elsewhere.access, ahead.access]
  })
  t.equal(answers.length, 7, 'one answer per token')
  t.match(answers, [
    { status: 200, body: { username: 'alice' } },
    { status: 200, body: { username: 'alice' } },
    { status: 200, body: { username: 'alice' } },
    { status: 401, body: { code: 'token_not_valid' } },
    { status: 401, body: { code: 'token_not_valid' } },
    { status: 401, body: { code: 'token_not_valid' } },
    { status: 200, body: { username: 'alice' } }
  ], 'accepts access tokens (compat login, /oauth/token, compat refresh, one from an issuer whose clock is ahead); refuses a refresh token, an expired one and another audience\'s')
})

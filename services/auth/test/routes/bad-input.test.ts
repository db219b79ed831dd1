/**
 * Every route, every malformed input: never a 500, never an internal detail,
 * always the error format of the route's contract (RFC 6749 on /oauth/*,
 * DRF's on SimpleJWT's routes, RFC 9457 problem+json everywhere else). The
 * routes are read from the app itself, so a route added later is swept too.
 */
import t from 'tap'
import { buildTestApp, login, servedRoutes, signUp } from '../helpers/app.js'

const SIMPLEJWT_PREFIX = '/api/token'

const huge = 'x'.repeat(10_000)
const oddValues: unknown[] = [null, 0, -1, 1e308, true, [], {}, ['a'], { a: 1 }, '', ' ', huge, '\u0000', '𝔘', "' OR 1=1 --"]
const fields = ['grant_type', 'username', 'password', 'refresh_token', 'token', 'refresh', 'scope', 'resource', 'client_id', 'client_secret', 'current_password', 'new_password']

/** Bodies that are not what any route wants: broken syntax, wrong shapes, every field of every route with every odd value. */
function oddBodies (): Array<{ type: string, payload: string }> {
  const bodies = [
    { type: 'application/json', payload: '{' },
    { type: 'application/json', payload: '[]' },
    { type: 'application/json', payload: 'null' },
    { type: 'application/json', payload: '"x"' },
    { type: 'application/json', payload: '' },
    { type: 'application/json', payload: '{"grant_type":"password","grant_type":"refresh_token","token":"a","token":"b","refresh":"a","refresh":"b"}' },
    { type: 'application/x-www-form-urlencoded', payload: '%%%' },
    { type: 'application/x-www-form-urlencoded', payload: 'grant_type=password&grant_type=refresh_token&username=a&username=b' },
    { type: 'multipart/form-data', payload: 'x' },
    { type: 'multipart/form-data; boundary=B', payload: '--B\r\nbroken\r\n\r\nx\r\n--B--\r\n' },
    { type: 'multipart/form-data; boundary=B', payload: `--B\r\nContent-Disposition: form-data; name="username"; filename="u"\r\n\r\n${'x'.repeat(20_000)}\r\n--B--\r\n` },
    { type: 'text/plain', payload: 'x' },
    { type: 'application/xml', payload: '<x/>' },
    { type: 'application/json; charset=utf-16', payload: '{}' }
  ]
  for (const value of oddValues) {
    bodies.push({ type: 'application/json', payload: JSON.stringify(Object.fromEntries(fields.map((field) => [field, value]))) })
  }
  return bodies
}

type ErrorFormat = 'oauth' | 'drf' | 'problem'

/** The error format a path's contract gives its errors. */
function formatOf (path: string): ErrorFormat {
  return path.startsWith('/oauth/') ? 'oauth' : path.startsWith(SIMPLEJWT_PREFIX) ? 'drf' : 'problem'
}

/** What is wrong with an answer to bad input: a 5xx but overload, an internal detail, an error body not in the route's format. */
function faultOf (res: { statusCode: number, headers: Record<string, unknown>, body: string }, format: ErrorFormat): string | undefined {
  // Overload is the one 5xx a client may see, and it says when to come back.
  if (res.statusCode >= 500) return res.statusCode === 503 && res.headers['retry-after'] !== undefined ? undefined : `${res.statusCode} ${res.body.slice(0, 200)}`
  if (res.statusCode < 400) return undefined
  if (/node_modules|\/src\/|\.[jt]s:\d+|\bat [\w.<>]+ \(/.test(res.body)) return `an internal detail in ${res.body.slice(0, 200)}`
  let answer: unknown
  try {
    answer = JSON.parse(res.body)
  } catch {
    return `${res.statusCode} is not JSON: ${res.body.slice(0, 100)}`
  }
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) return `not an error object: ${res.body.slice(0, 200)}`
  const fields = answer as Record<string, unknown>
  if (format === 'oauth' && typeof fields.error !== 'string') return `an OAuth error without error: ${res.body.slice(0, 200)}`
  if (format === 'problem' && (!String(res.headers['content-type']).startsWith('application/problem+json') || fields.status !== res.statusCode)) {
    return `not problem+json: ${String(res.headers['content-type'])} ${res.body.slice(0, 200)}`
  }
  return undefined
}

t.test('malformed input on every route: a 4xx in the route\'s own error format, never a 500 or an internal detail', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_RATE_LIMIT: '1000000' })
  await signUp(app, 'sweeper', 'correct horse battery')
  const tokens = await login(app, 'sweeper', 'correct horse battery')
  await app.ready()
  const routes = servedRoutes(app)
  t.ok(routes.some(([, path]) => path === '/oauth/token') && routes.some(([, path]) => path === `${SIMPLEJWT_PREFIX}/blacklist/`) && routes.some(([, path]) => path === '/v1/sessions/:id'),
    'the sweep reads the routes, nested ones included')

  const authorizations = [undefined, `Bearer ${tokens.access_token}`, `Bearer ${tokens.refresh_token}`, 'Bearer x.y.z', `Bearer ${huge}`, 'Basic !!!', `Basic ${Buffer.from(':').toString('base64')}`, `Basic ${Buffer.from('\u0000:\u0000').toString('base64')}`, `Basic ${Buffer.from('%00:%zz').toString('base64')}`]
  const bodies = oddBodies()
  let sent = 0
  for (const [method, template] of routes) {
    const format = formatOf(template)
    for (const path of template.includes(':') ? [template.replace(/:[^/]+/g, 'not-an-id'), template.replace(/:[^/]+/g, '00000000-0000-4000-8000-000000000000')] : [template]) {
      for (const authorization of authorizations) {
        for (const body of method === 'GET' || method === 'DELETE' ? [undefined] : bodies) {
          const headers: Record<string, string> = {}
          if (authorization !== undefined) headers.authorization = authorization
          if (body !== undefined) headers['content-type'] = body.type
          const res = await app.inject({ method: method as 'GET', url: path, headers, ...(body === undefined ? {} : { payload: body.payload }) })
          sent++
          const fault = faultOf(res, format)
          if (fault !== undefined) t.fail(`${method} ${path} ${authorization?.slice(0, 12) ?? 'no auth'} ${body?.type ?? ''} ${body?.payload.slice(0, 40) ?? ''}: ${fault}`)
        }
      }
    }
  }
  // The URL itself: bad escapes, NUL, a path id of every odd shape, a long query.
  for (const url of ['/v1/me?x=%zz', '/v1/me?%00=%00', `/v1/me?${huge}`, '/v1/sessions/%00', '/v1/sessions/%zz', '/v1/sessions/..%2f..%2fetc', '/oauth/token?grant_type=password', '/.well-known/jwks.json?x=%ff', '//v1//me', '/v1/me/']) {
    for (const method of ['GET', 'DELETE', 'POST']) {
      const res = await app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${tokens.access_token}` } })
      sent++
      // A path no route serves is the app's own 404 problem; a method the path is not served with, a 405 in the path's format naming the ones it is.
      const fault = faultOf(res, res.statusCode === 404 ? 'problem' : formatOf(url)) ??
        (res.statusCode === 405 && typeof res.headers.allow !== 'string' ? '405 without Allow' : undefined)
      if (fault !== undefined) t.fail(`${method} ${url.slice(0, 40)}: ${fault}`)
    }
  }
  t.ok(sent > 1000, `${sent} requests`)
})

t.test('a body of a type an OAuth route does not read: 400 in RFC 6749\'s terms, and the log says the 400 it sent', async (t) => {
  const ctx = await buildTestApp(t)
  const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', headers: { 'content-type': 'text/plain' }, payload: 'grant_type=password' })
  t.equal(res.statusCode, 400)
  t.equal(res.json<{ error: string }>().error, 'invalid_request')
  const lines = ctx.logs().split('\n').filter((l) => l.includes('"msg":"bad request"')).map((l) => JSON.parse(l) as { status: number })
  t.same(lines.map((l) => l.status), [400], 'not the 415 a problem+json route would have sent')
  const problemRoute = await ctx.app.inject({ method: 'POST', url: '/v1/users', headers: { 'content-type': 'text/plain' }, payload: 'x' })
  t.equal(problemRoute.statusCode, 415, 'a problem+json route answers 415 itself')
})

t.test('a path the router refuses before any route is still one request line and one histogram sample', async (t) => {
  const ctx = await buildTestApp(t)
  const badUrl = await ctx.app.inject({ method: 'GET', url: '/v1/%zz' })
  t.equal(badUrl.statusCode, 400)
  const tooLong = await ctx.app.inject({ method: 'DELETE', url: `/v1/sessions/${'a'.repeat(600)}` })
  t.equal(tooLong.statusCode, 414)
  const lines = ctx.logs().split('\n').filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines, [{ method: 'GET', route: 'unmatched', status: 400 }, { method: 'DELETE', route: 'unmatched', status: 414 }])
  t.equal(lines.length, 2)
  t.ok(lines.every((l) => typeof l.duration_ms === 'number' && l.duration_ms > 0), 'each timed: Fastify does not time what its router refuses')
  const scrape = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(scrape, /tessera_http_request_duration_seconds_count\{method="GET",route="unmatched",status="400"\} 1$/m)
  t.match(scrape, /tessera_http_request_duration_seconds_count\{method="DELETE",route="unmatched",status="414"\} 1$/m)
})

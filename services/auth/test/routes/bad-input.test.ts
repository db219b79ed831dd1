/**
 * Every route, every malformed input: never a 500, never an internal detail,
 * always the error format of the route's contract (RFC 6749 on /oauth/*,
 * DRF's on SimpleJWT's routes, RFC 9457 problem+json everywhere else). The
 * routes are read from the app itself, so a route added later is swept too.
 */
import t from 'tap'
import { buildTestApp, login, signUp } from '../helpers/app.js'

const SIMPLEJWT_PREFIX = '/api/token'

/** Every [method, path] the app serves, from its printed route tree (HEAD and OPTIONS left out). */
function servedRoutes (printed: string): Array<[string, string]> {
  const routes: Array<[string, string]> = []
  for (const line of printed.split('\n')) {
    const match = /(\/\S*) \(([A-Z, ]+)\)$/.exec(line)
    if (match === null) continue
    for (const method of (match[2] ?? '').split(', ')) if (method !== 'HEAD' && method !== 'OPTIONS') routes.push([method, match[1] ?? ''])
  }
  return routes
}

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
    { type: 'application/x-www-form-urlencoded', payload: '%%%' },
    { type: 'application/x-www-form-urlencoded', payload: 'grant_type=password&grant_type=refresh_token&username=a&username=b' },
    { type: 'text/plain', payload: 'x' },
    { type: 'application/xml', payload: '<x/>' },
    { type: 'application/json; charset=utf-16', payload: '{}' }
  ]
  for (const value of oddValues) {
    bodies.push({ type: 'application/json', payload: JSON.stringify(Object.fromEntries(fields.map((field) => [field, value]))) })
  }
  return bodies
}

t.test('malformed input on every route: a 4xx in the route\'s own error format, never a 500 or an internal detail', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_RATE_LIMIT: '1000000' })
  await signUp(app, 'sweeper', 'correct horse battery')
  const tokens = await login(app, 'sweeper', 'correct horse battery')
  await app.ready()
  const routes = servedRoutes(app.printRoutes({ commonPrefix: false }))
  t.ok(routes.some(([, path]) => path === '/oauth/token') && routes.some(([, path]) => path.startsWith(SIMPLEJWT_PREFIX)), 'the sweep reads the routes, SimpleJWT\'s included')

  const authorizations = [undefined, `Bearer ${tokens.access_token}`, `Bearer ${tokens.refresh_token}`, 'Bearer x.y.z', `Bearer ${huge}`, 'Basic !!!', `Basic ${Buffer.from(':').toString('base64')}`, `Basic ${Buffer.from('\u0000:\u0000').toString('base64')}`, `Basic ${Buffer.from('%00:%zz').toString('base64')}`]
  const bodies = oddBodies()
  let sent = 0
  for (const [method, template] of routes) {
    const format = template.startsWith('/oauth/') ? 'oauth' : template.startsWith(SIMPLEJWT_PREFIX) ? 'drf' : 'problem'
    for (const path of template.includes(':') ? [template.replace(/:[^/]+/g, 'not-an-id'), template.replace(/:[^/]+/g, '00000000-0000-4000-8000-000000000000')] : [template]) {
      for (const authorization of authorizations) {
        for (const body of method === 'GET' || method === 'DELETE' ? [undefined] : bodies) {
          const headers: Record<string, string> = {}
          if (authorization !== undefined) headers.authorization = authorization
          if (body !== undefined) headers['content-type'] = body.type
          const res = await app.inject({ method: method as 'GET', url: path, headers, ...(body === undefined ? {} : { payload: body.payload }) })
          sent++
          const what = `${method} ${path} ${authorization?.slice(0, 12) ?? 'no auth'} ${body?.type ?? ''} ${body?.payload.slice(0, 40) ?? ''}`
          if (res.statusCode >= 500) {
            // Overload is the one 5xx a client may see, and it says when to come back.
            if (res.statusCode !== 503 || res.headers['retry-after'] === undefined) t.fail(`${what}: ${res.statusCode} ${res.body.slice(0, 200)}`)
            continue
          }
          if (res.statusCode < 400) continue
          if (/node_modules|\/src\/|\.[jt]s:\d+|\bat [\w.<>]+ \(/.test(res.body)) t.fail(`${what}: an internal detail in ${res.body.slice(0, 200)}`)
          let answer: Record<string, unknown>
          try {
            answer = res.json()
          } catch {
            t.fail(`${what}: ${res.statusCode} is not JSON: ${res.body.slice(0, 100)}`)
            continue
          }
          if (format === 'oauth' && typeof answer.error !== 'string') t.fail(`${what}: an OAuth error without error: ${res.body.slice(0, 200)}`)
          if (format === 'problem' && (!String(res.headers['content-type']).startsWith('application/problem+json') || answer.status !== res.statusCode)) {
            t.fail(`${what}: not problem+json: ${String(res.headers['content-type'])} ${res.body.slice(0, 200)}`)
          }
          if (format === 'drf' && (typeof answer !== 'object' || answer === null || Array.isArray(answer))) t.fail(`${what}: not a DRF error body: ${res.body.slice(0, 200)}`)
        }
      }
    }
  }
  t.ok(sent > 1000, `${sent} requests`)
})

/**
 * What every request pays for its id and its logger is kept small
 * (request-id.ts, logging.ts's RequestLogger) without changing what is
 * written: ids stay unique and UUID-shaped, and a request's lines carry its
 * id exactly as pino's child logger wrote them.
 */
import { Writable } from 'node:stream'
import type { InjectOptions } from 'fastify'
import t from 'tap'
import type { Logger } from 'pino'
import { createLogger, lazyChildLogger } from '../src/logging.js'
import { requestIds } from '../src/request-id.js'
import { buildTestApp, login, signUp } from './helpers/app.js'

const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function capture (logLevel: 'info' | 'warn'): { logger: Logger, lines: () => Array<Record<string, unknown>>, children: () => number } {
  const written: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _enc, done) { written.push(chunk.toString()); done() } })
  const logger = createLogger({ logLevel }, sink)
  let children = 0
  const child = logger.child.bind(logger)
  logger.child = ((...args: Parameters<Logger['child']>) => { children++; return child(...args) }) as Logger['child']
  return { logger, lines: () => written.map((l) => JSON.parse(l) as Record<string, unknown>), children: () => children }
}

t.test('request ids: unique within a process and across processes, shaped like a UUID', async (t) => {
  const next = requestIds()
  const ids = Array.from({ length: 10_000 }, next)
  t.equal(new Set(ids).size, ids.length, 'no id repeats')
  t.ok(ids.every((id) => UUID_SHAPE.test(id)), 'every id is 8-4-4-4-12 hex')
  const other = requestIds()()
  t.not(other.slice(0, 24), ids[0]?.slice(0, 24), 'another process start draws another prefix')
  const small = requestIds(1)
  const renewed = Array.from({ length: 40 }, small)
  t.equal(new Set(renewed).size, renewed.length, 'still unique when the counter wraps')
  t.ok(new Set(renewed.map((id) => id.slice(0, -1))).size >= 2, 'the prefix is drawn anew before the counter wraps')
})

t.test('a request logger writes the lines pino\'s child would, and makes the child only when it writes', async (t) => {
  const eager = capture('info')
  eager.logger.child({ reqId: 'r-1' }).info({ route: '/x', status: 200 }, 'request')
  const lazy = capture('info')
  const requestLog = lazyChildLogger(lazy.logger, { reqId: 'r-1' }, {})
  t.equal(lazy.children(), 0, 'no child until something is logged')
  requestLog.info({ route: '/x', status: 200 }, 'request')
  t.equal(lazy.children(), 1)
  requestLog.warn('again')
  t.equal(lazy.children(), 1, 'one child per request')
  const [expected] = eager.lines()
  const [line, second] = lazy.lines()
  t.same({ ...line, time: 0 }, { ...expected, time: 0 }, 'the same fields')
  t.match(second, { level: 40, reqId: 'r-1', msg: 'again' })
  t.equal(requestLog.level, 'info')

  const quiet = capture('warn')
  const quietLog = lazyChildLogger(quiet.logger, { reqId: 'r-2' }, {})
  quietLog.info({ route: '/x' }, 'request')
  quietLog.debug('nothing')
  t.equal(quiet.children(), 0, 'below the level: no child, no line')
  t.same(quiet.lines(), [])
  quietLog.error({ err: new Error('boom') }, 'failed')
  t.equal(quiet.lines().length, 1)
  t.match(quiet.lines(), [{ level: 50, reqId: 'r-2', msg: 'failed', err: { message: 'boom' } }])
  t.match(quietLog.bindings(), { reqId: 'r-2' })
  const unspied = lazyChildLogger(createLogger({ logLevel: 'info' }, new Writable({ write (_chunk, _enc, done) { done() } })), { reqId: 'r-4' }, {})
  t.match(unspied.child({ part: 'a' }).bindings(), { reqId: 'r-4', part: 'a' }, 'a child of a request logger keeps its bindings')

  const routeLevel = lazyChildLogger(quiet.logger, { reqId: 'r-3' }, { level: 'debug' })
  routeLevel.debug('a route with its own level logs below the instance\'s')
  t.equal(quiet.lines().length, 2, 'one line more')
  t.match(quiet.lines().at(-1), { level: 20, reqId: 'r-3' })
})

t.test('at LOG_LEVEL=warn a request still counts and still logs what it warns about', async (t) => {
  const { app, logs, deps } = await buildTestApp(t, { LOG_LEVEL: 'warn' })
  app.get('/test/warns', async (request) => { request.log.warn({ detail: 'x' }, 'something odd'); return { ok: true } })
  const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(res.statusCode, 200)
  t.notMatch(logs(), '"msg":"request"', 'no request line below its level')
  t.match(await deps.metrics.render(), /tessera_http_request_duration_seconds_count\{method="GET",route="\/.well-known\/jwks.json",status="200"\} 1$/m, 'the histogram counted it')
  const warned = await app.inject({ method: 'GET', url: '/test/warns' })
  const line = logs().split('\n').filter((l) => l.includes('something odd')).map((l) => JSON.parse(l) as Record<string, unknown>)[0]
  t.match(line, { level: 40, reqId: warned.headers['x-request-id'], detail: 'x' })
})

t.test('a refused request\'s line says why in words an operator can tell apart, not the status\'s title', async (t) => {
  const { app, logs } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '1' })
  await signUp(app, 'alice', 'correct horse battery')
  const { access_token: access } = await login(app, 'alice', 'correct horse battery')
  const refusals: Array<[string, InjectOptions, number, string]> = [
    ['a taken username', { method: 'POST', url: '/v1/users', payload: { username: 'alice', password: 'correct horse battery' } }, 409, 'username: is already taken'],
    ['a short password', { method: 'POST', url: '/v1/users', payload: { username: 'bob', password: 'short' } }, 400, 'password: must be'],
    ['a wrong current password', { method: 'PUT', url: '/v1/password', headers: { authorization: `Bearer ${access}` }, payload: { current_password: 'wrong horse battery', new_password: 'another horse battery' } }, 403, 'current_password: is incorrect'],
    // Off /oauth, the back-off's OAuthError is a refused request too, not an "oauth error".
    ['a password change backed off', { method: 'PUT', url: '/v1/password', headers: { authorization: `Bearer ${access}` }, payload: { current_password: 'correct horse battery', new_password: 'another horse battery' } }, 429, '.+; retry in \\d+ s$'],
    ['no token', { method: 'GET', url: '/v1/me' }, 401, 'no well-formed Bearer token']
  ]
  for (const [what, request, status, reason] of refusals) {
    const res = await app.inject(request)
    t.equal(res.statusCode, status, what)
    const lines = logs().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.reqId === res.headers['x-request-id'] && l.msg === 'request refused')
    t.equal(lines.length, 1, `${what}: one refusal line`)
    t.match(lines[0], { level: 30, status, reason: new RegExp(`^${reason}`) }, `${what}: its reason`)
  }
})

/**
 * GET /readyz, as Tessera's: ready when the database answers and takes
 * writes; a 503 with Retry-After, and a log line saying why, when it is out
 * of reach or read-only. /healthz stays liveness alone.
 */
import { pino } from 'pino'
import t from 'tap'
import { memorySink } from '@tessera/testkit'
import { buildApp, type App } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { connect } from '../../src/db.js'
import { createTestDatabase } from '../helpers.js'

const databaseUrl = await createTestDatabase(t)
const logs = memorySink()

/** notes over the database at `url`, closed at the end. */
async function notesOver (url: string): Promise<App> {
  const db = connect(url)
  const app = await buildApp(loadConfig({ DATABASE_URL: url }), { db, logger: pino({ level: 'info' }, logs.stream), keys: async () => { throw new Error('no key needed') } })
  t.teardown(async () => {
    await app.close()
    await db.destroy()
  })
  return app
}

const refusals = (): Array<Record<string, unknown>> => logs.lines().map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'request refused')

t.test('a database that answers and takes writes: 200 {"status":"ready"}', async (t) => {
  const app = await notesOver(databaseUrl)
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.same([res.statusCode, res.json()], [200, { status: 'ready' }])
})

t.test('a database that takes no writes (a standby, read-only): 503 with Retry-After, live all the same', async (t) => {
  const readOnly = new URL(databaseUrl)
  readOnly.searchParams.set('options', '-c default_transaction_read_only=on')
  const app = await notesOver(readOnly.href)
  const before = refusals().length
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(res.json(), { type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the database takes no writes (a standby, or read-only)', instance: '/readyz', request_id: res.headers['x-request-id'] })
  t.match(refusals().slice(before), [{ reqId: res.headers['x-request-id'], status: 503, reason: 'the database takes no writes (a standby, or read-only)' }], 'logged, with why')
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, '/healthz: live')
})

t.test('a database out of reach (nothing listens on its port): 503 with Retry-After; why is logged, not sent', async (t) => {
  const app = await notesOver('postgres://notes:x@127.0.0.1:1/notes')
  const before = refusals().length
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.same(res.json(), { type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the database is not reachable', instance: '/readyz', request_id: res.headers['x-request-id'] })
  t.notMatch(res.body, 'ECONNREFUSED', 'the cause stays in the log')
  t.match(refusals().slice(before), [{ reqId: res.headers['x-request-id'], status: 503, reason: 'the database is not reachable', detail: 'connect ECONNREFUSED 127.0.0.1:1' }], 'logged, with the cause')
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, '/healthz: live, whatever the database does')
})

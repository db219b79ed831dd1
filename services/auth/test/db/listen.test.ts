/**
 * The LISTEN connection against a real Postgres reached through a relay: one
 * that goes silent without dropping (a failover that left the old address
 * unanswering, a partition) is noticed by its heartbeat, counted as lost, and
 * replaced, so changes are heard again.
 */
import { memorySink, silenceableRelay } from '@tessera/testkit'
import { sql } from 'kysely'
import t from 'tap'
import { listenForChanges } from '../../src/db/listen.js'
import { createLogger } from '../../src/logging.js'
import { testConfig } from '../helpers/app.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { within } from '../helpers/http.js'

/**
 * How long a NOTIFY, or a new connection after a silence, may take to come:
 * only one that never comes should run it out. The alternative is TCP's,
 * which notices a silent peer after hours (listen.ts); 2 s was the machine's
 * speed (three test files at once, load 9).
 */
const SHOWN_WITHIN_MS = 30_000

t.test('a listening connection gone silent is lost within its heartbeat, and a new one hears changes again', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const relay = await silenceableRelay(t, new URL(url))
  const sink = memorySink()
  const heard: string[] = []
  const events: string[] = []
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(`${warning.name}: ${warning.message}`) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  // A beat often, and the answer bound an instance has (listen.ts' HEARTBEAT), which a loaded
  // machine's SELECT 1 and the start's delivery check keep, so only the silence is lost.
  const heartbeat = { everyMs: 200, answerWithinMs: 5000 }
  const listener = await listenForChanges(relay.url, createLogger(testConfig({}), sink.stream), {
    channels: { tessera_test: (payload) => { heard.push(payload) } },
    onListening: (again) => { events.push(again ? 'listening again' : 'listening') },
    onLost: () => { events.push('lost') }
  }, heartbeat)
  t.teardown(listener.close)
  const notify = async (payload: string): Promise<void> => { await sql`SELECT pg_notify('tessera_test', ${payload})`.execute(db) }
  await notify('before')
  t.ok(await within(SHOWN_WITHIN_MS, async () => heard.includes('before'), 20) !== undefined, 'heard while the connection answers')

  relay.silence()
  t.ok(await within(SHOWN_WITHIN_MS, async () => events.includes('listening again'), 20) !== undefined, 'the silence is noticed and a new connection listens')
  t.same(events, ['listening', 'lost', 'listening again'])
  t.match(sink.text(), `the listening connection did not answer within ${heartbeat.answerWithinMs} ms`, 'the heartbeat noticed it')
  await notify('after')
  t.ok(await within(SHOWN_WITHIN_MS, async () => heard.includes('after'), 20) !== undefined, 'heard again on the new connection')
  t.same(heard, ['before', 'after'])
  // Beats every 200 ms into a silence of 5000: each waited for the one unanswered, none queued behind it.
  t.same(warnings, [], 'no query was sent while the client was still executing one')
})

t.test('a database that lets the listening connection in and never answers its LISTEN does not hold the start: the attempt is lost within the heartbeat\'s bound, and retried', async (t) => {
  const url = await createTestDatabase(t)
  const relay = await silenceableRelay(t, new URL(url), { silentFrom: 'first-statement' })
  const sink = memorySink()
  const events: string[] = []
  // Before, this await never ended: the start of a served instance waits on it.
  const listener = await listenForChanges(relay.url, createLogger(testConfig({}), sink.stream), {
    channels: { tessera_test: () => {} },
    onListening: (again) => { events.push(again ? 'listening again' : 'listening') },
    onLost: () => { events.push('lost') }
  }, { everyMs: 200, answerWithinMs: 1000 })
  t.teardown(listener.close)
  t.same(events, ['lost'], 'not listening, and said so')
  // Out of reach, as an outage is: its code and message, without the same stack at every retry.
  t.match(sink.text(), /"db_error":\{"code":"ETIMEDOUT","message":"the listening connection did not answer within 1000 ms"\}.*"msg":"change listener lost its connection; reconnecting"/)
  t.notMatch(sink.text(), /"stack"/)
})

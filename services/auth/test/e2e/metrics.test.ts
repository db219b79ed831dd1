import { connect } from 'node:net'
import { sql } from 'kysely'
import t from 'tap'
import { LISTENER_NAME } from '../../src/db/listen.js'
import type { App } from '../../src/http/app-types.js'
import { KEY_POOL } from '../../src/cluster/pool.js'
import { loadKeyring } from '../../src/keys/load.js'
import { rotateKeys } from '../../src/keys/rotate.js'
import { createMetrics } from '../../src/metrics/metrics.js'
import { listenForMetrics } from '../../src/routes/metrics.js'
import { VERSION } from '../../src/version.js'
import { buildTestApp, login, refresh, refuseRejectedKey, signUp } from '../helpers/app.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { within } from '../helpers/http.js'
import { startServer } from '../helpers/server.js'

/** Parses Prometheus text exposition strictly: every line must be HELP, TYPE or a sample. */
function parseMetrics (text: string): { samples: Map<string, number>, types: Map<string, string> } {
  const samples = new Map<string, number>()
  const types = new Map<string, string>()
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*'
  const sample = new RegExp(`^(${name})(\\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\.)*",?)*\\})? (-?[0-9.e+-]+|NaN|\\+Inf|-Inf)$`)
  for (const line of text.split('\n')) {
    if (line === '') continue
    const type = new RegExp(`^# TYPE (${name}) (counter|gauge|histogram|summary|untyped)$`).exec(line)
    if (type !== null) { types.set(type[1] ?? '', type[2] ?? ''); continue }
    if (new RegExp(`^# HELP ${name} .*$`).test(line)) continue
    const match = sample.exec(line)
    if (match === null) throw new Error(`not Prometheus text: ${line}`)
    samples.set(`${match[1] ?? ''}${match[2] ?? ''}`, Number(match[3]))
  }
  return { samples, types }
}

async function scrape (app: App): Promise<Map<string, number>> {
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  if (res.statusCode !== 200 || !String(res.headers['content-type']).startsWith('text/plain')) throw new Error(`scrape failed: ${res.statusCode}`)
  return parseMetrics(res.body).samples
}

t.test('/metrics is Prometheus text and every counter moves by what was done', async (t) => {
  const { app, advance } = await buildTestApp(t, { TESSERA_LOGIN_BACKOFF_AFTER: '2', TESSERA_LOGIN_BACKOFF_BASE: '60s' })
  const { types } = parseMetrics((await app.inject({ method: 'GET', url: '/metrics' })).body)
  t.equal(types.get('tessera_http_request_duration_seconds'), 'histogram')
  t.equal(types.get('tessera_refresh_decisions_per_call'), 'histogram')
  for (const counter of ['tessera_logins_total', 'tessera_refreshes_total', 'tessera_revocations_total', 'tessera_tokens_issued_total', 'tessera_rate_limited_total']) {
    t.equal(types.get(counter), 'counter', `${counter} is a counter`)
  }
  for (const gauge of ['tessera_hash_queue_waiting', 'tessera_hash_in_flight', 'tessera_signing_keys', 'tessera_db_pool_connections', 'tessera_db_pool_idle_connections', 'tessera_db_pool_waiting_clients', 'tessera_build_info']) {
    t.equal(types.get(gauge), 'gauge', `${gauge} is a gauge`)
  }

  const before = await scrape(app)
  t.equal(before.get('tessera_logins_total{outcome="backed_off"}'), 0, 'outcomes are exported at zero from the start')
  await signUp(app, 'hana', 'hana password')
  const first = await login(app, 'hana', 'hana password')
  await login(app, 'hana', 'hana password')
  for (let i = 0; i < 2; i++) await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'ivan', password: 'wrong password' } })
  await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'ivan', password: 'wrong password' } })
  const rotated = await refresh(app, first.refresh_token)
  t.equal(rotated.status, 200)
  t.equal((await refresh(app, first.refresh_token)).status, 200, 'inside the grace window')
  advance(11)
  t.equal((await refresh(app, first.refresh_token)).status, 400, 'after the window: reuse')
  t.equal((await refresh(app, 'garbage.token.here')).status, 400, 'refused')
  const second = await login(app, 'hana', 'hana password')
  await app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: second.refresh_token } })
  await app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: second.refresh_token } })

  const after = await scrape(app)
  const moved = (key: string): number => (after.get(key) ?? 0) - (before.get(key) ?? 0)
  t.equal(moved('tessera_logins_total{outcome="ok"}'), 3)
  t.equal(moved('tessera_logins_total{outcome="failed"}'), 2)
  t.equal(moved('tessera_logins_total{outcome="backed_off"}'), 1)
  t.equal(moved('tessera_logins_total{outcome="shed"}'), 0)
  t.equal(moved('tessera_refreshes_total{outcome="rotated"}'), 1)
  t.equal(moved('tessera_refreshes_total{outcome="grace"}'), 1)
  t.equal(moved('tessera_refreshes_total{outcome="reuse"}'), 1)
  t.equal(moved('tessera_refreshes_total{outcome="refused"}'), 1)
  t.equal(moved('tessera_refresh_decisions_per_call_count'), 3, 'three refreshes reached the database, one after another: three calls')
  t.equal(moved('tessera_refresh_decisions_per_call_sum'), 3)
  t.equal(moved('tessera_refresh_decisions_per_call_bucket{le="1"}'), 3, 'each call carried one')
  t.equal(moved('tessera_revocations_total'), 1, 'revoking an ended session again counts nothing')
  t.equal(moved('tessera_tokens_issued_total{grant_type="password"}'), 3, 'three logins, by grant type')
  t.equal(moved('tessera_tokens_issued_total{grant_type="refresh_token"}'), 2, 'a rotation and a grace replay')
  t.equal(after.get('tessera_signing_keys{state="current"}'), 1)
  t.equal(after.get('tessera_hash_in_flight'), 0)
  t.equal(after.get('tessera_hash_queue_waiting'), 0)
  t.ok((after.get('tessera_db_pool_connections{pool="main"}') ?? 0) >= 1)
  t.ok((after.get('tessera_db_pool_idle_connections{pool="main"}') ?? Infinity) <= (after.get('tessera_db_pool_connections{pool="main"}') ?? 0), 'idle is part of the open connections, not a label beside them')
  t.equal(after.get('tessera_db_pool_waiting_clients{pool="main"}'), 0)
  t.same([...after.keys()].filter((key) => key.startsWith('tessera_db_pool_connections')), ['tessera_db_pool_connections{pool="main"}'], 'no state label that sum() would add up; the app has one pool')
  t.equal(moved('tessera_http_request_duration_seconds_count{method="POST",route="/oauth/token",status="200"}'), 5)
  t.equal(moved('tessera_http_request_duration_seconds_count{method="POST",route="/oauth/token",status="429"}'), 1)
})

t.test('build info, the signing key\'s age and the time to the next rotation', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const promotedAt = new Date(Date.now() - 3600_000)
  const current = deps.keyring.keys.find((k) => k.state === 'current')
  t.ok(current)
  if (current !== undefined) deps.keyring.replace([{ ...current, promotedAt }])
  const now = promotedAt.getTime() + 3600_000
  const metrics = createMetrics({ keyring: deps.keyring, keyRotation: 86400, clock: () => new Date(now), processMetrics: false })
  const samples = parseMetrics(await metrics.registry.metrics()).samples
  t.equal(samples.get('tessera_signing_key_age_seconds'), 3600)
  t.equal(samples.get('tessera_signing_key_next_rotation_seconds'), 86400 - 3600)
  t.equal(samples.get(`tessera_build_info{version="${VERSION}",node_version="${process.version}"}`), 1)
  t.equal(samples.get('tessera_background_job_failures_total{job="key_rotation"}'), 0, 'failure counters start at zero')

  // A next key made by hand signs once published for the lead.
  if (current !== undefined) deps.keyring.replace([{ ...current, promotedAt }, { ...current, kid: 'pending', state: 'next', promotedAt: null, publishedAt: new Date(now - 100_000) }])
  const withLead = (lead: number): ReturnType<typeof createMetrics> => createMetrics({ keyring: deps.keyring, keyRotation: 86400, keyPublishLead: lead, clock: () => new Date(now), processMetrics: false })
  t.equal(parseMetrics(await withLead(600).registry.metrics()).samples.get('tessera_signing_key_next_rotation_seconds'), 500, 'a pending next key: when it signs')
  t.equal(parseMetrics(await withLead(90_000).registry.metrics()).samples.get('tessera_signing_key_next_rotation_seconds'), 90_000 - 100, 'even past the schedule: the timer promotes a next key only once published for the lead')
  if (current !== undefined) deps.keyring.replace([{ ...current, promotedAt }])

  const off = parseMetrics(await createMetrics({ keyring: deps.keyring, keyRotation: null, processMetrics: false }).registry.metrics()).samples
  t.notOk(off.has('tessera_signing_key_next_rotation_seconds'), 'no next rotation when rotation is off')
  t.ok((await scrape(app)).has('tessera_build_info{version="' + VERSION + '",node_version="' + process.version + '"}'))
})

t.test('the metrics listener serves GET /metrics and nothing else', async (t) => {
  const metrics = createMetrics({ processMetrics: false })
  const listener = await listenForMetrics(metrics.registry, metrics.render, '127.0.0.1', 0)
  t.teardown(listener.close)
  const scraped = await fetch(listener.url)
  t.equal(scraped.status, 200)
  t.equal(scraped.headers.get('content-type'), metrics.registry.contentType)
  t.match(await scraped.text(), /^tessera_build_info\{/m)
  t.equal((await fetch(listener.url.replace('/metrics', '/v1/me'))).status, 404)
  t.equal((await fetch(listener.url, { method: 'POST' })).status, 404)
  // RFC 9112 §3.2.2: a server accepts a target in absolute-form too (a scrape through a forward proxy), on a raw socket since fetch sends origin-form.
  const { port } = new URL(listener.url)
  const absolute = async (target: string): Promise<string> => await new Promise<string>((resolve, reject) => {
    let answer = ''
    const socket = connect(Number(port), '127.0.0.1', () => { socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`) })
    socket.setEncoding('utf8').on('data', (chunk: string) => { answer += chunk }).on('close', () => { resolve(answer) }).on('error', reject)
  })
  t.match(await absolute(`http://scraper:secret@127.0.0.1:${port}/metrics?x=1`), /^HTTP\/1\.1 200 [^]*\r\n\r\n[^]*^tessera_build_info\{/m, 'GET http://host/metrics: the scrape')
  t.match(await absolute(`http://127.0.0.1:${port}/v1/me`), /^HTTP\/1\.1 404 /, 'any other path in absolute-form: 404')
})

t.test('TESSERA_METRICS_PORT serves /metrics on its own listener and not on the API port', async (t) => {
  const url = await createTestDatabase(t)
  const server = await startServer(t, { DATABASE_URL: url, TESSERA_METRICS_PORT: '0', TESSERA_KEK: Buffer.alloc(32, 3).toString('base64url') })
  const metricsUrl = /"metrics":"(http:\/\/[^"]+)"/.exec(server.output())?.[1] ?? ''
  t.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'the start-up line says where')
  t.equal((await fetch(`${server.url}/metrics`)).status, 404, 'not on the API port')
  const scraped = await fetch(metricsUrl)
  t.equal(scraped.status, 200)
  t.match(await scraped.text(), /^tessera_signing_key_age_seconds \d/m)
  t.equal(await server.stop(), 0, 'drains and exits 0 with the listener')
})

t.test('summed over pool, the pool gauges are every pooled connection the instance holds on Postgres: the workers\', the primary\'s, its key work\'s, its cleanup\'s', async (t) => {
  const url = await createTestDatabase(t)
  // A key tick every second, each on the key work's connections (idle ones stay open 10 s).
  const server = await startServer(t, { DATABASE_URL: url, TESSERA_METRICS_PORT: '0', TESSERA_WORKERS: '2', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEK: Buffer.alloc(32, 3).toString('base64url') })
  const metricsUrl = /"metrics":"(http:\/\/[^"]+)"/.exec(server.output())?.[1] ?? ''
  const { db } = await testConnection(t, url)
  // The instance's backends: all on its database but this test's own, and the LISTEN connection, which is no pool's.
  const backends = async (): Promise<number> => Number((await sql<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name <> ${LISTENER_NAME}`.execute(db)).rows[0]?.n)
  let last: { series: string[], key: number, summed: number, backends: number } | undefined
  // Connections open and close meanwhile (a tick, an idle timeout): the scrape and Postgres are compared until they agree.
  const agreed = await within(20_000, async () => {
    const samples = [...parseMetrics(await (await fetch(metricsUrl)).text()).samples].filter(([key]) => key.startsWith('tessera_db_pool_connections'))
    const key = samples.find(([series]) => series === 'tessera_db_pool_connections{pool="key"}')?.[1] ?? 0
    last = { series: samples.map(([series]) => series).sort(), key, summed: samples.reduce((sum, [, n]) => sum + n, 0), backends: await backends() }
    return key > 0 && last.summed === last.backends
  }, 100)
  t.ok(agreed !== undefined, `the key work's connections counted, and the sum is what Postgres shows (last: ${JSON.stringify(last)})`)
  t.same(last?.series, ['tessera_db_pool_connections{pool="cleanup"}', 'tessera_db_pool_connections{pool="key"}', 'tessera_db_pool_connections{pool="main"}'], 'one series per pool, the workers\' and the primary\'s main pools summed')
  t.ok((last?.key ?? Infinity) <= KEY_POOL, `at most the key work's ${KEY_POOL}`)
})

t.test('a method no route answers counts as method="other", so clients cannot add series', async (t) => {
  const { app, deps } = await buildTestApp(t)
  for (const method of ['PROPFIND', 'MKCOL', 'LOCK', 'SEARCH']) {
    t.equal((await app.inject({ method: method as 'GET', url: '/nowhere' })).statusCode, 404, `${method} is unrouted`)
  }
  t.equal((await app.inject({ method: 'DELETE', url: '/oauth/token' })).statusCode, 405, 'a routed method on a path without it')
  t.equal((await app.inject({ method: 'OPTIONS', url: '/nowhere' })).statusCode, 404)
  const counts = [...parseMetrics(await deps.metrics.render()).samples]
    .filter(([key]) => key.startsWith('tessera_http_request_duration_seconds_count{'))
  t.same(counts.map(([key, count]) => `${key} ${count}`).sort(), [
    'tessera_http_request_duration_seconds_count{method="DELETE",route="unmatched",status="405"} 1',
    'tessera_http_request_duration_seconds_count{method="OPTIONS",route="unmatched",status="404"} 1',
    'tessera_http_request_duration_seconds_count{method="other",route="unmatched",status="404"} 4'
  ], 'the four unrouted methods are one series')
})

t.test('tokens issued count by grant type alone: key rotations add no series', async (t) => {
  const { app, deps, config, kek } = await buildTestApp(t)
  await signUp(app, 'hana', 'hana password')
  const kids = new Set<string>()
  for (let i = 0; i < 3; i++) {
    if (i > 0) {
      await rotateKeys(deps.db, { kek, bits: config.keyBits }, { immediate: true, clock: deps.clock, who: { actor: 'operator' } })
      await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
    }
    kids.add(deps.keyring.signer?.kid ?? '')
    await login(app, 'hana', 'hana password')
  }
  t.equal(kids.size, 3, 'three keys signed')
  const issued = [...parseMetrics(await deps.metrics.render()).samples].filter(([key]) => key.startsWith('tessera_tokens_issued_total'))
  t.same(issued, [['tessera_tokens_issued_total{grant_type="password"}', 3]], 'one series, whichever key signed')
})

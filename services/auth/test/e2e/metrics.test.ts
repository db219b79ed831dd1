import t from 'tap'
import type { App } from '../../src/http/app-types.js'
import { loadKeyring } from '../../src/keys/load.js'
import { rotateKeys } from '../../src/keys/rotate.js'
import { createMetrics } from '../../src/metrics/metrics.js'
import { listenForMetrics } from '../../src/routes/metrics.js'
import { VERSION } from '../../src/version.js'
import { buildTestApp, login, refresh, refuseRejectedKey, signUp } from '../helpers/app.js'
import { createTestDatabase } from '../helpers/db.js'
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
  t.equal(moved('tessera_revocations_total'), 1, 'revoking an ended session again counts nothing')
  t.equal(moved('tessera_tokens_issued_total{grant_type="password"}'), 3, 'three logins, by grant type')
  t.equal(moved('tessera_tokens_issued_total{grant_type="refresh_token"}'), 2, 'a rotation and a grace replay')
  t.equal(after.get('tessera_signing_keys{state="current"}'), 1)
  t.equal(after.get('tessera_hash_in_flight'), 0)
  t.equal(after.get('tessera_hash_queue_waiting'), 0)
  t.ok((after.get('tessera_db_pool_connections') ?? 0) >= 1)
  t.ok((after.get('tessera_db_pool_idle_connections') ?? Infinity) <= (after.get('tessera_db_pool_connections') ?? 0), 'idle is part of the open connections, not a label beside them')
  t.equal(after.get('tessera_db_pool_waiting_clients'), 0)
  t.notOk([...after.keys()].some((key) => key.startsWith('tessera_db_pool_connections{')), 'no state label that sum() would add up')
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

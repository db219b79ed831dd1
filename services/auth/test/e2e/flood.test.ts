import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createTestDatabase } from '../helpers/db.js'
import { flood, type FloodResult } from '../helpers/flood.js'
import { startServer } from '../helpers/server.js'

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? NaN
}

interface Samples { jwks: number[], healthz: number[], refresh: number[] }

t.test('a login flood is shed while JWKS, refresh and /healthz keep their latency', async (t) => {
  const env = {
    DATABASE_URL: await createTestDatabase(t),
    TESSERA_KEK: randomBytes(32).toString('base64url'),
    // The hashing queue is what sheds here, not the per-IP limit (the flood comes from one address).
    TESSERA_RATE_LIMIT: '1000000'
  }
  const server = await startServer(t, env)
  const base = server.url
  const json = { 'content-type': 'application/json' }
  const created = await fetch(`${base}/v1/users`, { method: 'POST', headers: json, body: JSON.stringify({ username: 'steady', password: 'steady password' }) })
  t.equal(created.status, 201, await created.text())
  const login = await fetch(`${base}/oauth/token`, { method: 'POST', headers: json, body: JSON.stringify({ grant_type: 'password', username: 'steady', password: 'steady password' }) })
  let refreshToken = ((await login.json()) as { refresh_token: string }).refresh_token

  const timed = async (call: () => Promise<Response>, expect: number): Promise<number> => {
    const started = performance.now()
    const res = await call()
    await res.arrayBuffer()
    const ms = performance.now() - started
    if (res.status !== expect) throw new Error(`expected ${expect}, got ${res.status}`)
    return ms
  }
  // Each route is probed by its own sequential loop, so the cheap ones get
  // many samples even when a refresh is slow.
  const probe = async (seconds: number): Promise<Samples> => {
    const samples: Samples = { jwks: [], healthz: [], refresh: [] }
    const deadline = Date.now() + seconds * 1000
    const loop = async (name: keyof Samples, call: () => Promise<Response>): Promise<void> => {
      while (Date.now() < deadline) {
        samples[name].push(await timed(call, 200))
        await sleep(10)
      }
    }
    await Promise.all([
      loop('jwks', async () => await fetch(`${base}/.well-known/jwks.json`)),
      loop('healthz', async () => await fetch(`${base}/healthz`)),
      loop('refresh', async () => {
        const res = await fetch(`${base}/oauth/token`, { method: 'POST', headers: json, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: refreshToken }) })
        if (res.status === 200) refreshToken = ((await res.clone().json()) as { refresh_token: string }).refresh_token
        return res
      })
    ])
    return samples
  }

  const routes = ['jwks', 'healthz', 'refresh'] as const
  const measure = async (): Promise<{ ratios: Record<typeof routes[number], number>, result: FloodResult }> => {
    const quietBefore = await probe(2)
    const flooding = flood(base, 200, 10)
    await sleep(1500)
    const loaded = await probe(7)
    const result = await flooding
    await sleep(500)
    const quietAfter = await probe(2)
    const ratios = { jwks: 0, healthz: 0, refresh: 0 }
    for (const name of routes) {
      // The machine is shared: the quiet reference is the busier of the two
      // quiet spells around the flood, so other people's load is not counted
      // as the flood's; a 1 ms floor keeps scheduler noise on sub-millisecond
      // calls from becoming a huge ratio.
      const before = Math.max(median(quietBefore[name]), median(quietAfter[name]))
      const during = median(loaded[name])
      ratios[name] = during / Math.max(before, 1)
      t.comment(`${name}: median ${before.toFixed(2)} ms quiet, ${during.toFixed(2)} ms under flood (${ratios[name].toFixed(1)}×, ${loaded[name].length} samples)`)
    }
    t.comment(`flood: ${JSON.stringify(result)}`)
    return { ratios, result }
  }

  await probe(1) // warm-up: JIT, pool connections
  // One more try when the first is over the bound: other work on a shared
  // two-core machine can land on the flood's seconds only. Both are reported.
  let { ratios, result } = await measure()
  let shedTotal = result.statuses['503'] ?? 0
  if (routes.some((name) => ratios[name] >= 10)) {
    t.comment('over the bound once; measuring again')
    ;({ ratios, result } = await measure())
    shedTotal += result.statuses['503'] ?? 0
  }
  for (const name of routes) t.ok(ratios[name] < 10, `${name} stays within 10× of its quiet median`)
  const statuses = Object.keys(result.statuses).map(Number)
  t.ok(statuses.every((s) => s === 400 || s === 429 || s === 503), `logins answered only 400, 429 or 503 (${statuses.join(', ')})`)
  t.ok((result.statuses['503'] ?? 0) + (result.statuses['429'] ?? 0) > 0, 'some logins were shed rather than queued')
  t.ok((result.statuses['400'] ?? 0) > 0, 'and some were served')
  t.equal(result.errors, 0, 'no connection failed')

  const metrics = await (await fetch(`${base}/metrics`)).text()
  const shed = Number(/^tessera_logins_total\{outcome="shed"\} (\d+)/m.exec(metrics)?.[1])
  t.equal(shed, shedTotal, 'every 503 shows in tessera_logins_total{outcome="shed"}')
  // Read once the instance has stopped and its output is drained: a worker writes its lines through pino's asynchronous stream, so one logged while a request ran can reach the output after the answer.
  await server.stop()
  await server.closed
  t.notMatch(server.output(), /"level":50/, 'no error was logged')
})

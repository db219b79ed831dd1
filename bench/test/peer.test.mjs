/**
 * The pieces of `make bench-peer` that do not need the SimpleJWT stack: the
 * command line (documented, and one clear line when the peer cannot start),
 * the wrk pool script against a real local server, the openssl parser and
 * the summary's ratio. The side-by-side itself needs Debian packages and is
 * run by hand (docs/performance.md, "make bench-peer").
 * @module
 */
import { spawnSync } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { createServer } from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { harness } from './harness.mjs'
import { peerMarkdown, peerTargets, summarize } from '../lib/peer-compare.mjs'
import { parseOpensslSpeed } from '../lib/physical.mjs'
import { runWrk } from '../lib/wrk.mjs'

test('--help documents the side-by-side and its flags', async () => {
  const { code, stdout } = await harness(['--help'], {})
  assert.equal(code, 0)
  for (const flag of ['--peer', '--quick', '--out', '--scenario', 'PEER_DRF_DIR', 'REPORT-peer.md']) assert.ok(stdout.includes(flag), flag)
})

test('--peer without the peer stack fails at once with one line saying why', async () => {
  const missing = path.join(os.tmpdir(), 'no-peer-drf-here')
  const { code, stdout, stderr } = await harness(['--peer', '--quick'], { PEER_DRF_DIR: missing })
  assert.equal(code, 2)
  assert.equal(stdout, '')
  assert.equal(stderr, `bench --peer: cannot start the SimpleJWT stack: no SimpleJWT stack at ${missing} (set PEER_DRF_DIR to the peer-drf folder)\n`)
})

test('--peer runs its own scenarios: --scenario is refused', async () => {
  const { code, stderr } = await harness(['--peer', '--scenario', 'refresh'], {})
  assert.equal(code, 2)
  assert.match(stderr, /^bench: --peer runs its own scenarios; --scenario does not apply\n$/)
})

test('the wrk pool script sends each single-use line once, then stops', async (t) => {
  // wrk is a prerequisite like Nginx (README.md): missing, this fails rather than skip.
  assert.equal(spawnSync('wrk', ['--version']).error, undefined, 'wrk is not installed (apt-get install wrk)')
  /** @type {string[]} */
  const bodies = []
  /** @type {string[]} */
  const bearers = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', () => {
      if (req.method === 'POST') bodies.push(body)
      if (req.headers.authorization !== undefined) bearers.push(req.headers.authorization)
      res.writeHead(req.url === '/fail' ? 503 : 200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)))
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-wrk-'))
  t.after(async () => {
    server.close()
    await fs.rm(dir, { recursive: true, force: true })
  })
  const url = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`
  const lines = Array.from({ length: 20 }, (_, i) => JSON.stringify({ token: `t${i}` }))
  await fs.writeFile(path.join(dir, 'once.txt'), `${lines.join('\n')}\n`)

  const once = await runWrk({ url, method: 'POST', path: '/token', kind: 'body', pool: path.join(dir, 'once.txt'), mode: 'once', connections: 2, seconds: 1 })
  // wrk may build a connection's next request and never send it: a line is sent once at most, never twice.
  assert.equal(new Set(bodies).size, bodies.length, 'no line sent twice')
  assert.ok(bodies.every((b) => lines.includes(b)), 'only lines of the pool')
  assert.ok(bodies.length >= lines.length - 2, `${bodies.length} of ${lines.length} sent`)
  assert.equal(once.exhausted, true)
  assert.ok(once.statuses['200'] > 0 && once.statuses['200'] <= 20, JSON.stringify(once))
  assert.equal(once.errors, 0)

  await fs.writeFile(path.join(dir, 'bearer.txt'), 'a\nb\n')
  const cycle = await runWrk({ url, method: 'GET', path: '/fail', kind: 'bearer', pool: path.join(dir, 'bearer.txt'), mode: 'cycle', connections: 1, seconds: 1 })
  assert.equal(cycle.exhausted, false)
  assert.ok(bearers.length > 2, 'the pool goes round')
  assert.deepEqual([...new Set(bearers)].sort(), ['Bearer a', 'Bearer b'])
  assert.equal(cycle.okRps, 0)
  assert.equal(cycle.errors, cycle.statuses['503'], 'non-2xx answers are errors')
})

test("openssl speed's sign/s is read by its column", () => {
  // OpenSSL 3.0.19, `openssl speed -seconds 1 -multi 2 rsa2048` on the CI machine
  const multi = [
    'Got: +F2:2:2048:719.000000:10010.000000 from 1',
    'version: 3.0.19',
    'options: bn(64,64)',
    '                  sign    verify    sign/s verify/s',
    'rsa 2048 bits 0.000703s 0.000051s   1423.0  19599.1'
  ].join('\n')
  assert.equal(parseOpensslSpeed(multi, 2048), 1423)
  const several = ['                  sign    verify    sign/s verify/s', 'rsa 1024 bits 0.000102s 0.000007s 9757.6 152852.6', 'rsa 2048 bits 0.000676s 0.000022s 1479.2 46028.3'].join('\n')
  assert.equal(parseOpensslSpeed(several, 2048), 1479)
  assert.throws(() => parseOpensslSpeed('no table here', 2048), /no rsa 2048 row/)
})

test('the summary compares 2xx per second, averaged over the rounds', () => {
  const run = (/** @type {string} */ stack, /** @type {number} */ round, /** @type {number} */ okRps, /** @type {number} */ errors) =>
    ({ round, scenario: 'refresh', connections: 64, stack, okRps, rps: okRps + errors, p99: 10 * round, max: 30 * round, errors, statuses: { 200: okRps * 10, ...(errors > 0 ? { 503: errors * 10 } : {}) }, exhausted: false, cpu: { trees: { tessera: 1, peer: 0.5 } } })
  const [refresh] = summarize([run('tessera', 1, 1500, 0), run('peer', 1, 500, 3), run('peer', 2, 480, 0), run('tessera', 2, 1400, 0)],
    /** @type {any} */ ([{ name: 'refresh', connections: 64, target: 3 }]))
  assert.deepEqual(refresh.tessera, { okRps: 1450, rps: 1450, p99: 20, max: 60, shed: 0, errors: 0, cores: 1, exhausted: false })
  assert.deepEqual(refresh.peer, { okRps: 490, rps: 492, p99: 20, max: 60, shed: 30, errors: 3, cores: 0.5, exhausted: false })
  assert.equal(refresh.ratio, 2.96)
  assert.equal(refresh.met, false)
  // Tessera's logins at 64: the longest wait its hashing queue counted, the worst round's.
  const [login] = summarize([{ ...run('tessera', 1, 20, 9000), scenario: 'login', queueWaitMs: 250 }, { ...run('tessera', 2, 20, 9000), scenario: 'login', queueWaitMs: 500 }, { ...run('peer', 1, 60, 0), scenario: 'login' }],
    /** @type {any} */ ([{ name: 'login', connections: 64, target: 1 }]))
  assert.equal(login.tessera.queueWaitMs, 500)
  assert.equal('queueWaitMs' in login.peer, false, 'the peer has no such histogram')
})

test("issue 12's targets are judged from the summary: refresh rate, /v1/me against the peer, login's wait at 64", () => {
  /** @param {Partial<Record<string, number>>} tessera @param {Partial<Record<string, number>>} [peer] */
  const side = (tessera, peer = {}) => {
    const base = { okRps: 0, rps: 0, p99: 0, max: 0, shed: 0, errors: 0, cores: 1, exhausted: false }
    return { tessera: { ...base, ...tessera }, peer: { ...base, ...peer } }
  }
  const summary = [
    { name: 'login', connections: 16, ...side({ okRps: 60 }), ratio: 1, target: 1, met: true },
    { name: 'login', connections: 64, ...side({ okRps: 55, p99: 680, max: 900, shed: 48107, errors: 48107, queueWaitMs: 500 }), ratio: 1, target: 1, met: true },
    { name: 'refresh', connections: 64, ...side({ okRps: 1520, p99: 99 }), ratio: 3.1, target: 3, met: true },
    { name: 'me', connections: 64, ...side({ okRps: 3500 }, { okRps: 1200 }), ratio: 2.92, target: 3, met: false }
  ]
  const targets = peerTargets(summary)
  assert.deepEqual(targets.map((x) => [x.text.split(' ')[0], x.met]), [['refresh', true], ['GET', false], ['login', true]])
  // Each bound counts: a refresh p99 over 100 ms, one error, a wait in the hashing queue past 0.5 s, or none scraped.
  // The p99 over every answer is for reading: past 0.5 s above, met on the queue's own histogram.
  assert.equal(peerTargets([{ ...summary[2], ...side({ okRps: 1600, p99: 101 }) }])[0]?.met, false)
  assert.equal(peerTargets([{ ...summary[2], ...side({ okRps: 1600, p99: 50, errors: 1 }) }])[0]?.met, false)
  assert.equal(peerTargets([{ ...summary[1], ...side({ queueWaitMs: 1000 }) }])[0]?.met, false)
  assert.equal(peerTargets([{ ...summary[1], ...side({}) }])[0]?.met, false, 'no histogram scraped: not met')
  assert.equal(targets[2]?.measured, "the longest wait in the hashing queue ≤ 500 ms (its histogram's bucket, every round); 55 2xx/s; 48,107 answers 503; p99 over every answer 680 ms (longest 900 ms), for reading")
  assert.deepEqual(peerTargets([]), [])

  const markdown = peerMarkdown({
    generatedAt: 'now',
    machine: { cores: 2, cpu: 'cpu', memoryGiB: 1, platform: 'linux', node: '24', postgres: '18', loadBefore: [0, 0, 0], loadAfter: [0, 0, 0] },
    settings: { quick: true, rounds: 2, duration: 2, warmup: 1, wrk: 'wrk', tessera: { start: 'node', database: 'embedded', env: {} }, peer: { dir: 'peer', mode: 'sync', env: {}, startedByThisRun: [] } },
    physical: { signAllCores: 7000, signOpenssl: 7000, argon2AllCores: 80, refreshSigningLimit: 3500 },
    runs: [],
    scenarios: summary
  })
  assert.match(markdown, /## Targets \(issue 12\)\n\n\| target \| Tessera, this run \|/)
  assert.match(markdown, /\| GET \/v1\/me ≥ 3× the SimpleJWT stack's \/api\/me\/ \| 3,500 against 1,200 2xx\/s = ×2.92 \| NOT met \|/)
})

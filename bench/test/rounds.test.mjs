/**
 * How `make bench` measures and judges, without Tessera: a scenario's rounds
 * alternate with its ceiling's (of every part of a combined one), the best of
 * each is kept, errors count over every round, each target's bounds all hold,
 * and a shedding run counts 503 with Retry-After apart from errors against a
 * real local server.
 * @module
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer } from 'node:http'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ceilingRegistry } from '../lib/ceiling-registry.mjs'
import { runLoad, percentile } from '../lib/load.mjs'
import { childrenRunning, coresBetween, cpuSnapshot, harnessCpuSince } from '../lib/proc-cpu.mjs'
import { judgeTargets, roundCpuText } from '../lib/report.mjs'
import { allRounds, bestRound, meets, targetText } from '../lib/rounds.mjs'
import { longestWaitMs, queueWaitBuckets } from '../lib/queue-wait.mjs'

test("a scenario's rounds alternate with its ceiling's, parts of a combined ceiling included, each measured once", async () => {
  /** @type {string[]} */
  const events = []
  const rates = { a: [10, 30, 20], b: [100, 50, 80] }
  /** @param {'a' | 'b'} name */
  const measured = (name) => ({ what: name, measure: async (/** @type {number} */ round) => { events.push(`${name}${round}`); return rates[name][round] ?? 0 } })
  const registry = ceilingRegistry({
    rounds: 3,
    log: () => {},
    definitions: { a: measured('a'), b: measured('b'), sum: { what: 'a+b', from: ['a', 'b'], combine: (x, y) => x + y } }
  })
  assert.equal(await registry.soFar('sum'), 110, 'before any round: the first round of each part')
  /** @type {number[]} */
  const soFar = []
  for (let round = 0; round < 3; round++) {
    await registry.round('sum', round)
    events.push(`scenario${round}`)
    soFar.push(await registry.soFar('sum'))
  }
  assert.deepEqual(soFar, [110, 110, 110], 'the best round so far: 110, then 80 and 100 below it')
  await registry.round('a', 1)
  assert.deepEqual(events, ['a0', 'b0', 'scenario0', 'a1', 'b1', 'scenario1', 'a2', 'b2', 'scenario2'], 'no round measured twice')
  assert.deepEqual(await registry.result('a'), { rate: 30, low: 10, rounds: [10, 30, 20], what: 'a' })
  assert.deepEqual(await registry.result('sum'), { rate: 110, low: 80, rounds: [110, 80, 100], what: 'a+b' }, 'combined round by round, not from the best of each part (30 + 100)')
  assert.equal(await registry.ceiling('sum'), 110)
  assert.deepEqual(Object.keys(await registry.all()), ['a', 'sum', 'b'], 'in the order first asked for whole')
})

test('a ceiling asked for whole measures every round still missing, in order', async () => {
  /** @type {number[]} */
  const order = []
  const registry = ceilingRegistry({ rounds: 3, log: () => {}, definitions: { c: { what: 'c', measure: async (round) => { order.push(round); return 5 + round } } } })
  await registry.round('c', 0)
  assert.equal(await registry.ceiling('c'), 7)
  assert.deepEqual(order, [0, 1, 2])
})

test('a measured round may bring its cores: kept round by round, and a combined ceiling combines the rates alone', async () => {
  const cpu = (/** @type {number} */ bare) => ({ trees: { bare }, machine: 2, loadGenerator: 0.8, others: 0.05 })
  const registry = ceilingRegistry({
    rounds: 2,
    log: () => {},
    definitions: {
      bare: { what: 'bare', measure: async (round) => ({ rate: 100 + round, cpu: cpu(1 + round / 10) }) },
      plain: { what: 'plain', measure: async () => 50 },
      both: { what: 'both', from: ['bare', 'plain'], combine: (a, b) => a + b }
    }
  })
  const bare = await registry.result('bare')
  assert.deepEqual([bare.rate, bare.low, bare.rounds], [101, 100, [100, 101]])
  assert.deepEqual(bare.cpu?.map((c) => c?.trees.bare), [1, 1.1])
  assert.equal((await registry.result('plain')).cpu, undefined, 'a ceiling that says nothing of the machine has no cpu')
  assert.deepEqual((await registry.result('both')).rounds, [150, 151])
})

test('a ceiling measured in process gets its cores from the registry, over its timed span when it opens one, and every round starts settled', async () => {
  /** @type {string[]} */
  const events = []
  let snapshots = 0
  const registry = ceilingRegistry({
    rounds: 1,
    log: () => {},
    cpu: {
      start: () => { events.push('start'); return ++snapshots },
      since: (/** @type {number} */ start) => { events.push(`since ${start}`); return { trees: { harness: start }, others: 0, machine: 1 } },
      settle: async () => { events.push('settle') }
    },
    definitions: {
      whole: { what: 'whole', measure: async () => { events.push('whole'); return 10 } },
      timed: { what: 'timed', measure: async (_round, window) => { events.push('setup'); window.open(); events.push('timed'); window.close(); events.push('teardown'); return 20 } },
      bare: { what: 'bare', measure: async () => ({ rate: 30, cpu: { trees: { bare: 1 }, loadGenerator: 0.5, others: 0, machine: 2 } }) }
    }
  })
  assert.deepEqual((await registry.result('whole')).cpu, [{ trees: { harness: 1 }, others: 0, machine: 1 }])
  assert.deepEqual(events.splice(0), ['settle', 'start', 'whole', 'since 1'], 'settled, then read around the whole round')
  assert.deepEqual((await registry.result('timed')).cpu, [{ trees: { harness: 3 }, others: 0, machine: 1 }])
  assert.deepEqual(events.splice(0), ['settle', 'start', 'setup', 'start', 'timed', 'since 3', 'teardown'], 'read over the timed span alone')
  assert.deepEqual((await registry.result('bare')).cpu?.[0]?.trees, { bare: 1 }, 'a round that brings its cores keeps them')
  assert.equal(events[0], 'settle', 'every round waits for the last one to finish')
  assert.ok(!events.some((e) => e.startsWith('since')), 'and is not read again')
})

test('a process inside a named tree, found by its command line, is counted under its own name only', async (t) => {
  // An idle parent (Tessera's primary) with a busy child (its hashing process).
  const parent = spawn(process.execPath, ['-e', "require('node:child_process').spawn(process.execPath, ['-e', 'for (;;) {}', 'hashing-standin'], { stdio: 'ignore' }); setInterval(() => {}, 1000)"], { stdio: 'ignore' })
  // Gone before the next test's first snapshot: a busy child still in this process's tree then, orphaned by its
  // parent's death and so out of it at that test's second, took its CPU out of the harness's count (-0.15 cores).
  t.after(async () => {
    const pids = [...childrenRunning([parent.pid ?? 0], 'hashing-standin'), parent.pid ?? 0]
    for (const pid of pids) process.kill(pid, 'SIGKILL')
    for (let i = 0; i < 100 && pids.some((pid) => existsSync(`/proc/${pid}`)); i++) await new Promise((resolve) => setTimeout(resolve, 50))
  })
  /** @type {number[]} */
  let child = []
  for (let i = 0; i < 50 && child.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    child = childrenRunning([parent.pid ?? 0], 'hashing-standin')
  }
  assert.equal(child.length, 1, 'the child is found by its command line')
  assert.deepEqual(childrenRunning([parent.pid ?? 0], 'no such part'), [])
  const before = cpuSnapshot()
  // As below: two seconds, and a share far below a core, for a loaded machine (0.23 of a core seen over one second at load 15).
  await new Promise((resolve) => setTimeout(resolve, 2000))
  const used = coresBetween(before, cpuSnapshot(), { tessera: [parent.pid ?? 0], hashing: child })
  assert.ok(used.trees.hashing > 0.02, `the child under its own name: ${JSON.stringify(used)}`)
  assert.ok(used.trees.tessera < used.trees.hashing / 2, `and not again under its parent's: ${JSON.stringify(used)}`)
  const whole = coresBetween(before, cpuSnapshot(), { tessera: [parent.pid ?? 0] })
  assert.ok(whole.trees.tessera > 0.02, `unnamed, it is part of its parent's tree: ${JSON.stringify(whole)}`)
  const shared = coresBetween(before, cpuSnapshot(), { one: child, other: child })
  assert.ok(shared.trees.one > 0.02 && shared.trees.other > 0.02, `a root two trees both name counts in each: ${JSON.stringify(shared)}`)
})

test("a ceiling measured in process reports the harness's cores apart from the servers it started", async (t) => {
  // Two processes that only burn CPU: one stands for a server the harness started, one for what a measurement starts (pgbench).
  const server = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' })
  const helper = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' })
  t.after(() => { server.kill('SIGKILL'); helper.kill('SIGKILL') })
  const start = cpuSnapshot()
  // Two seconds, and a share far below a core: a busy process got 0.08 of a core at load 18 (other tests, a shared VM); counted wrongly, it is 0.
  await new Promise((resolve) => setTimeout(resolve, 2000))
  const cpu = harnessCpuSince(start, { server: [server.pid ?? 0], postgres: [] })
  assert.equal(cpu.loadGenerator, undefined, 'no load generator in process')
  assert.ok(cpu.trees.server > 0.02, `the server counted on its own: ${JSON.stringify(cpu)}`)
  assert.ok(cpu.trees.harness > 0.02, `the helper counted with the harness: ${JSON.stringify(cpu)}`)
  assert.ok(cpu.trees.harness < 1.5, `the server not counted twice: ${JSON.stringify(cpu)}`)
  assert.equal(cpu.trees.postgres, 0)
  assert.equal(roundCpuText({ rps: 100, cpu: { ...cpu, trees: { harness: 1, postgres: 0.5 }, others: 0.25 } }), ' (cores: harness 1.00, postgres 0.50, others 0.25; ms of CPU per answer: harness 10.00, postgres 5.00)', 'no load generator named')
})

/** @param {number} rps @param {number} p99 @param {number} errors @param {Record<string, number>} statuses */
const round = (rps, p99, errors, statuses) => ({ requests: rps * 3, rps, p50: 1, p99, errors, statuses, seconds: 3 })

test('the best round is kept, every round and the errors of all of them reported', () => {
  const rounds = [round(900, 80, 0, { 200: 2700 }), round(1000, 90, 0, { 200: 3000 }), round(700, 150, 2, { 200: 2100, 500: 2 })]
  assert.equal(bestRound(rounds), rounds[1])
  assert.equal(bestRound([round(5, 20, 0, {}), round(5, 10, 0, {})]).p99, 10, 'equal rates: the lower p99')
  assert.deepEqual(allRounds(rounds), {
    rounds: [{ rps: 900, p99: 80, errors: 0 }, { rps: 1000, p99: 90, errors: 0 }, { rps: 700, p99: 150, errors: 2 }],
    low: 700,
    errors: 2,
    statuses: { 200: 7800, 500: 2 }
  })
  assert.throws(() => bestRound([]), /no round/)
  const shedding = [{ ...round(20, 700, 0, { 200: 60 }), queueWaitMs: 500, shedP99: 9 }, { ...round(25, 800, 0, { 200: 75 }), queueWaitMs: 400, shedP99: 30 }]
  assert.deepEqual(allRounds(shedding), {
    rounds: [{ rps: 20, p99: 700, errors: 0, shedP99: 9 }, { rps: 25, p99: 800, errors: 0, shedP99: 30 }],
    low: 20,
    errors: 0,
    statuses: { 200: 135 },
    queueWaitMs: 500,
    shedP99: 30
  }, 'the longest queue wait and the slowest shed answers are the worst round\'s')
})

test('a target is met only when every bound it sets holds, with zero errors', () => {
  const refresh = { rps: 1500, p99Ms: 100, source: /** @type {const} */ ('issue 12') }
  assert.equal(meets(refresh, { rps: 1500, p99: 100, errors: 0 }, 0.5), true)
  assert.equal(meets(refresh, { rps: 1499, p99: 50, errors: 0 }, 1), false)
  assert.equal(meets(refresh, { rps: 1600, p99: 101, errors: 0 }, 1), false)
  assert.equal(meets(refresh, { rps: 1600, p99: 50, errors: 1 }, 1), false)
  const jwks = { ratio: 0.8, source: /** @type {const} */ ('issue 12') }
  assert.equal(meets(jwks, { rps: 1, p99: 9999, errors: 0 }, 0.8), true)
  assert.equal(meets(jwks, { rps: 1, p99: 1, errors: 0 }, 0.79), false)
  assert.equal(targetText(refresh), '≥ 1,500/s, p99 ≤ 100 ms')
  assert.equal(targetText({ ratio: 0.7, source: 'for reading' }), '≥ 70 % (for reading)')
  const flood = { rps: 1, queueWaitMs: 500, shedP99Ms: 100, source: /** @type {const} */ ('issue 12') }
  assert.equal(meets(flood, { rps: 25, p99: 800, errors: 0, queueWaitMs: 500, shedP99: 16 }, 0.3), true, 'login at 64 connections: the wait in the queue is bounded, not the hash after it')
  assert.equal(meets(flood, { rps: 0, p99: 0, errors: 0, queueWaitMs: 0, shedP99: 1 }, 0), false, 'every answer shed is no pass')
  assert.equal(meets(flood, { rps: 25, p99: 400, errors: 0, queueWaitMs: 750, shedP99: 16 }, 0.3), false, 'a wait past the bound')
  assert.equal(meets(flood, { rps: 25, p99: 400, errors: 0, queueWaitMs: 500, shedP99: 101 }, 0.3), false, 'a shed answer that was not at once')
  assert.equal(meets(flood, { rps: 25, p99: 400, errors: 0 }, 0.3), false, 'bounds not measured are not met')
  assert.equal(targetText(flood), '≥ 1/s, queue wait ≤ 500 ms, 503 p99 ≤ 100 ms')
})

test("the longest wait in Tessera's hashing queue between two scrapes of its histogram", () => {
  /** @param {number[]} counts cumulative, for le 0.1, 0.5, 1, +Inf */
  const scrape = (counts) => queueWaitBuckets([
    '# HELP tessera_hash_queue_wait_seconds How long each started password hash waited for its slot',
    '# TYPE tessera_hash_queue_wait_seconds histogram',
    ...['0.1', '0.5', '1', '+Inf'].map((le, i) => `tessera_hash_queue_wait_seconds_bucket{le="${le}"} ${counts[i]}`),
    'tessera_hash_queue_wait_seconds_sum 1.5',
    `tessera_hash_queue_wait_seconds_count ${counts[3]}`,
    'tessera_hash_in_flight 2'
  ].join('\n'))
  assert.deepEqual([...scrape([1, 2, 3, 4])], [[0.1, 1], [0.5, 2], [1, 3], [Infinity, 4]])
  const before = scrape([10, 12, 13, 13])
  assert.equal(longestWaitMs(before, scrape([30, 40, 42, 42])), 1000, 'one new wait between 0.5 and 1 s')
  assert.equal(longestWaitMs(before, scrape([30, 40, 41, 41])), 500, 'every new wait at most 0.5 s, though an older one was longer')
  assert.equal(longestWaitMs(before, scrape([30, 40, 41, 42])), Infinity, 'one past the last finite bucket')
  assert.equal(longestWaitMs(before, before), 0, 'nothing started')
  assert.equal(longestWaitMs(new Map(), scrape([5, 5, 5, 5])), 100, 'a first scrape from nothing')
})

test("issue 12's targets are judged per scenario, absolute ones with their ceilings beside; issue 9's ratios apart", () => {
  /** @param {string} name @param {object} fields */
  const result = (name, fields) => ({ name, rps: 100, p99: 10, ceiling: 'c', ceilingRate: 200, ratio: 0.5, errors: 0, met: true, target: { ratio: 0.5, source: /** @type {const} */ ('issue 12') }, ...fields })
  const { targets, issue9 } = judgeTargets([
    result('refresh', { rps: 1000, p99: 90, ceiling: 'refresh-combined', ceilingRate: 1100, ratio: 0.909, target: { rps: 1500, p99Ms: 100, source: 'issue 12' }, issue9Ratio: 0.7, met: false }),
    result('jwks', { ratio: 0.9 }),
    result('jwks-304', { ratio: 0.7, met: false }),
    result('login', { rps: 66, ceiling: 'argon2', ceilingRate: 80, ratio: 0.825, met: false, target: { ratio: 0.9, source: 'issue 12' } }),
    result('login-c64', { rps: 55, p99: 480, ceiling: 'argon2', ceilingRate: 60, ratio: 0.917, shed: 12345, shedByRetryAfter: { 1: 12000, 2: 345 }, queueWaitMs: 500, shedP99: 12, target: { queueWaitMs: 500, source: 'issue 12' } })
  ], { 'refresh-combined': { rate: 1100 }, 'refresh-signing-limit': { rate: 3300 }, 'login-combined': { rate: 70 } })
  assert.deepEqual(targets.map((t) => [t.text.split(' ')[0], t.met]), [['refresh', false], ['JWKS', false], ['login', false], ['login', true]])
  assert.equal(targets[1]?.measured, 'jwks: 100/s = 90 % of c 200/s, 0 errors; jwks-304: 100/s = 70 % of c 200/s, 0 errors', 'no ceiling beside: none printed')
  assert.equal(targets[2]?.measured, 'login: 66/s = 83 % of argon2 80/s, 0 errors (for reading: 94 % of login-combined 70/s; login-combined itself 88 % of argon2: the most a login reaches with the rest of its work costing what it costs alone)', 'judged on argon2 alone, login-combined beside, and what login-combined is of argon2')
  assert.equal(targets[0]?.measured, 'refresh: 1,000/s, p99 90 ms, 0 errors (91 % of refresh-combined 1,100/s; 30 % of refresh-signing-limit 3,300/s)')
  assert.match(targets[0]?.text ?? '', /\(issue 12\)$/)
  assert.equal(targets[3]?.measured, 'login-c64: 55/s, p99 480 ms, 0 errors, 12,345 answers 503 with Retry-After (1 s ×12,000, 2 s ×345), the longest wait in the hashing queue ≤ 500 ms (its histogram\'s bucket, every round), p99 of the 503 answers 12 ms (worst round) (92 % of argon2 60/s)')
  const [jwks] = judgeTargets([result('jwks', { ratio: 0.9, beside: [{ ceiling: 'bare-jwks-one-process', rate: 150, low: 140, ratio: 0.667 }] })]).targets
  assert.equal(jwks?.measured, 'jwks: 100/s = 90 % of c 200/s, 0 errors (for reading: 67 % of bare-jwks-one-process 150/s)', 'the one-process route beside the judged one')
  assert.deepEqual(issue9.map((t) => [t.text, t.met]), [['refresh ≥ 70 % of refresh-combined', true], ['zero errors in every scenario', true]])
  assert.deepEqual(judgeTargets([]), { targets: [], issue9: [] })
})

test('a shedding run: 503 with Retry-After is shed, not an error; without it, an error; latency is of the 2xx answers, and of the 503s apart', async (t) => {
  let n = 0
  const server = createServer((req, res) => {
    n++
    if (n % 3 === 0) setTimeout(() => res.writeHead(503, { 'retry-after': '1' }).end(), 60)
    else if (n % 7 === 0) res.writeHead(503).end()
    else setTimeout(() => res.writeHead(200).end('{}'), 20)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)))
  t.after(() => server.close())
  const url = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`
  const result = await runLoad({ url, path: '/', connections: 4, duration: 1, warmup: 0, shed: true })
  const statuses = /** @type {Record<string, number>} */ (result.statuses)
  assert.ok((result.shed ?? 0) > 0, JSON.stringify(result))
  assert.deepEqual(result.shedByRetryAfter, { 1: result.shed }, 'the shed answers by their Retry-After')
  assert.equal((result.shed ?? 0) + result.errors, statuses['503'], 'every 503 is either shed (Retry-After) or an error')
  assert.ok(result.errors > 0, 'a 503 without Retry-After is an error')
  assert.equal(result.requests, statuses['200'], 'the rate counts answered requests only')
  assert.ok(result.p50 >= 20, `2xx latency ${result.p50} ms`)
  assert.equal(typeof result.p99All, 'number', 'the p99 of every answer is kept beside')
  assert.ok((result.shedP99 ?? 0) >= 60, `the 503 answers' own p99: ${result.shedP99} ms`)
  assert.equal(percentile([5, 1, 3, 2, 4], 50), 3)
  assert.equal(percentile([], 99), 0)
})

test('a load run calls beforeMeasured after its warm-up, and measures only what follows it', async (t) => {
  let served = 0
  const server = createServer((req, res) => { served++; res.writeHead(200).end('{}') })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)))
  t.after(() => { server.close() })
  const url = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`
  /** @type {number[]} */
  const servedAtCall = []
  const result = await runLoad({ url, path: '/', connections: 2, duration: 0.5, warmup: 0.3, beforeMeasured: async () => { servedAtCall.push(served); await new Promise((resolve) => setTimeout(resolve, 300)) } })
  assert.equal(servedAtCall.length, 1, 'called once')
  assert.ok((servedAtCall[0] ?? 0) > 0, 'after the warm-up had run')
  assert.ok(result.requests > 0 && result.requests <= served - (servedAtCall[0] ?? 0), `the measured run counts only what came after: ${result.requests} of ${served - (servedAtCall[0] ?? 0)}`)
})

test("a measured run reports what the machine's cores did: each named process tree, the load generator, everyone else", async (t) => {
  const server = createServer((req, res) => { res.writeHead(200).end('{}') })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)))
  // A process that only burns CPU stands for the server whose cores a round reports.
  const busy = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' })
  t.after(() => { server.close(); busy.kill('SIGKILL') })
  const url = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`
  /** @type {Record<string, number[]>[]} */
  const asked = []
  const result = await runLoad({ url, path: '/', connections: 4, duration: 1, warmup: 0, cpu: () => { const trees = { busy: [busy.pid ?? 0], gone: [] }; asked.push(trees); return trees } })
  assert.equal(asked.length, 1, 'the trees are read once, when the measured run starts')
  const cpu = result.cpu
  assert.ok(cpu !== undefined, 'asked for, the CPU is reported')
  assert.ok(cpu.trees.busy > 0, `the busy process used CPU: ${JSON.stringify(cpu)}`)
  assert.equal(cpu.trees.gone, 0, 'a tree of no process used none')
  assert.ok(cpu.loadGenerator > 0, `autocannon runs in this process: ${JSON.stringify(cpu)}`)
  assert.ok(cpu.others >= 0)
  assert.ok(cpu.machine + 0.05 >= cpu.trees.busy + cpu.loadGenerator, `the machine's busy cores hold the parts: ${JSON.stringify(cpu)}`)
  assert.equal((await runLoad({ url, path: '/', connections: 1, duration: 0.2, warmup: 0 })).cpu, undefined, 'not asked for, not measured')
})

test("each round's CPU is kept with it, and read beside its rate as cores and CPU time per answer", () => {
  const cpu = { trees: { tessera: 1.1, notes: 0, postgres: 0.55 }, loadGenerator: 0.12, others: 0.2, machine: 1.97 }
  const rounds = [{ requests: 3000, rps: 1000, p50: 1, p99: 90, errors: 0, statuses: { 200: 3000 }, seconds: 3, cpu }, round(900, 80, 0, { 200: 2700 })]
  assert.deepEqual(allRounds(rounds).rounds, [{ rps: 1000, p99: 90, errors: 0, cpu }, { rps: 900, p99: 80, errors: 0 }])
  assert.equal(roundCpuText({ rps: 1000, cpu }), ' (cores: tessera 1.10, postgres 0.55, load generator 0.12, others 0.20; ms of CPU per answer: tessera 1.10, postgres 0.55)')
  assert.equal(roundCpuText({ rps: 0, cpu }), ' (cores: tessera 1.10, postgres 0.55, load generator 0.12, others 0.20)', 'no answer, no CPU per answer')
  assert.equal(roundCpuText({ rps: 900 }), '', 'a round measured without its CPU says nothing of it')
  const idlePostgres = { trees: { bare: 1.2, postgres: 0.004 }, loadGenerator: 0.5, others: 0.1, machine: 1.8 }
  assert.equal(roundCpuText({ rps: 2000, cpu: idlePostgres }), ' (cores: bare 1.20, load generator 0.50, others 0.10; ms of CPU per answer: bare 0.60)', 'a tree that would print as 0.00 is left out')
})

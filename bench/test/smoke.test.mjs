/**
 * The harness end to end on short runs: every scenario that can run here runs
 * against a real Tessera with zero errors, and the report is whole. Speed is
 * not judged (the machine may be busy); `make bench` does that.
 * @module
 */
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { harness } from './harness.mjs'

test('a quick run of every scenario has no errors and writes a whole report', { timeout: 180_000 }, async (t) => {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-bench-'))
  t.after(async () => { await fs.rm(out, { recursive: true, force: true }) })
  // The test run's Postgres when there is one (the harness makes and drops a scratch database on it).
  const env = process.env.TESSERA_TEST_ADMIN_URL ? { DATABASE_URL: process.env.TESSERA_TEST_ADMIN_URL } : {}
  const { code, stdout, stderr } = await harness(['--quick', '--no-scaling', '--out', out, '--save-profile', 'smoke'], env)
  assert.equal(code, 0, stderr)

  const report = JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8'))
  const ran = report.scenarios.map((/** @type {any} */ s) => s.name)
  assert.deepEqual(ran.slice(0, 6), ['login', 'login-c64', 'refresh', 'jwks', 'jwks-304', 'me'])
  assert.deepEqual([...ran, ...report.skipped.map((/** @type {any} */ s) => s.name)].sort(), ['client-credentials', 'gateway-jwks', 'gateway-refresh', 'jwks', 'jwks-304', 'login', 'login-c64', 'me', 'notes', 'refresh'])
  for (const s of report.scenarios) {
    assert.equal(s.errors, 0, `${s.name}: ${JSON.stringify(s.statuses)}`)
    // A shedding scenario may answer nothing within a quick run on a busy machine (every login
    // still hashing, or shed): what it measures. Its accounting is tested in rounds.test.mjs.
    if (s.shed === undefined) assert.ok(s.requests > 0 && s.rps > 0 && s.ratio > 0, `${s.name}: ${JSON.stringify(s)}`)
    assert.ok(s.ceilingRate > 0, s.name)
    assert.ok(s.p99 >= s.p50, s.name)
    assert.equal(typeof s.met, 'boolean')
    // Measured as its ceiling is: in rounds (one in a quick run), the best kept, the worst beside.
    assert.equal(s.rounds.length, report.settings.rounds, s.name)
    assert.ok(s.low <= s.rps && s.ceilingLow <= s.ceilingRate, s.name)
    assert.equal(typeof s.target.source, 'string', s.name)
    // Each round says what the machine gave it.
    for (const r of s.rounds) assert.ok(r.cpu?.machine > 0 && r.cpu.loadGenerator >= 0 && r.cpu.others >= 0, `${s.name}: ${JSON.stringify(r)}`)
  }
  const refresh = report.scenarios.find((/** @type {any} */ s) => s.name === 'refresh')
  assert.ok(refresh.rounds.every((/** @type {any} */ r) => r.cpu.trees.tessera > 0 && r.cpu.trees.postgres > 0), `a refresh round's CPU is Tessera's and its Postgres's: ${JSON.stringify(refresh.rounds)}`)
  const loginC64 = report.scenarios.find((/** @type {any} */ s) => s.name === 'login-c64')
  assert.equal((loginC64.statuses['200'] ?? 0) + (loginC64.statuses['503'] ?? 0), Object.values(loginC64.statuses).reduce((a, b) => a + b, 0), 'answered or shed, nothing else')
  assert.equal(loginC64.requests, loginC64.statuses['200'] ?? 0, 'its rate counts the answered logins')
  assert.equal(typeof loginC64.shed, 'number')
  // A scenario that cannot run here is reported as not run, with the reason.
  for (const s of report.skipped) assert.match(s.reason, /not (built|written)/)
  for (const name of ['sign-jose', 'argon2', 'rotation', 'bare-token', 'refresh-combined', 'bare-jwks', 'bare-jwks-304', 'bare-me']) {
    assert.ok(report.ceilings[name]?.rate > 0, `ceiling ${name}`)
  }
  // The JWKS and /v1/me are judged against the bare route laid out as the instance they ran on (one worker
  // per core), the same route in one process read beside, and for the JWKS the same answers by node:http
  // before Fastify's routing (as Tessera answers its own), each in as many rounds.
  for (const ceiling of ['bare-jwks', 'bare-jwks-304', 'bare-me']) {
    const row = report.scenarios.find((/** @type {any} */ s) => s.ceiling === ceiling)
    const besideNames = [`${ceiling}-one-process`, ...(ceiling === 'bare-me' ? [] : [`${ceiling}-node`])]
    assert.deepEqual(row.beside, besideNames.map((name) => {
      const beside = report.ceilings[name]
      assert.equal(beside.rounds.length, report.settings.rounds, name)
      return { ceiling: name, rate: beside.rate, low: beside.low, ratio: Math.round((row.rps / beside.rate) * 1000) / 1000 }
    }), row.name)
    assert.match(report.ceilings[ceiling].what, report.machine.cores > 1 ? new RegExp(`^bare Fastify served as Tessera serves it: a node:cluster of ${report.machine.cores} workers`) : /one worker/)
  }
  // Their rounds are measured just before the scenario's, as the judged ceiling's is, not after the scenario's rounds.
  const measuredInOrder = stderr.split('\n').map((l) => l.replace(/^\[bench \+[\d.]+s\] /, '')).filter((l) => /^(ceiling bare-jwks(-one-process|-node)?|scenario jwks)…$/.test(l))
  assert.deepEqual(measuredInOrder, ['ceiling bare-jwks…', 'ceiling bare-jwks-one-process…', 'ceiling bare-jwks-node…', 'scenario jwks…'])
  // The physical limits stand beside the ceilings: signing on every core (÷ 2 for a refresh) and argon2 on every core.
  for (const name of ['sign-all-cores', 'refresh-signing-limit', 'argon2-all-cores']) assert.ok(report.ceilings[name]?.rate > 0, `physical ${name}`)
  assert.ok(Math.abs(report.ceilings['refresh-signing-limit'].rate - report.ceilings['sign-all-cores'].rate / 2) <= 0.5)
  assert.deepEqual(report.physical.map((/** @type {any} */ p) => [p.scenario, p.limit]), [['login', 'argon2-all-cores'], ['refresh', 'refresh-signing-limit']])
  const { rate: signs } = report.ceilings['sign-jose']
  const expected = 1 / (2 / signs + 1 / report.ceilings.rotation.rate + 1 / report.ceilings['bare-token'].rate)
  assert.ok(Math.abs(report.ceilings['refresh-combined'].rate - expected) <= 1)
  // Beside login's argon2: Tessera's own password grant, and the three parts combined.
  assert.ok(report.ceilings['login-grant']?.rate > 0, 'ceiling login-grant')
  const login = 1 / (1 / report.ceilings.argon2.rate + 1 / report.ceilings['login-grant'].rate + 1 / report.ceilings['bare-token'].rate)
  assert.ok(Math.abs(report.ceilings['login-combined'].rate - login) <= 1, `login-combined ${JSON.stringify(report.ceilings['login-combined'])}`)
  // Issue 12's targets (and issue 14's), each judged; issue 9's ratios apart, for reading.
  assert.deepEqual(report.targets.targets.map((/** @type {any} */ t) => t.text.replace(/ .*\((issue \d+)\)$/, ' $1')), ['refresh issue 12', '/v1/me issue 12', 'JWKS issue 12', 'login issue 12', 'login issue 12', 'client_credentials issue 14'])
  for (const t of report.targets.targets) assert.equal(typeof t.met, 'boolean')
  assert.deepEqual(report.targets.issue9.map((/** @type {any} */ t) => t.text), ['login ≥ 85 % of argon2', 'refresh ≥ 70 % of refresh-combined', 'zero errors in every scenario'])
  // Every ceiling keeps its rounds (one in a quick run) and its worst.
  for (const [name, c] of Object.entries(report.ceilings)) {
    assert.ok(Array.isArray(c.rounds) && c.low > 0 && c.low <= c.rate, `${name}: ${JSON.stringify(c)}`)
    if (c.rounds.length > 0) assert.equal(c.rate, Math.max(...c.rounds), name)
  }
  // A bare route's rounds say what the machine did meanwhile, the bare server's processes apart.
  for (const name of ['bare-jwks', 'bare-me-one-process', 'bare-token']) {
    const [cpu] = report.ceilings[name].cpu ?? []
    assert.ok(cpu !== undefined && cpu.trees.bare > 0 && cpu.loadGenerator > 0, `${name}: ${JSON.stringify(report.ceilings[name].cpu)}`)
  }
  // A ceiling measured in the harness's process reports its cores too, without a load generator.
  for (const name of ['sign-jose', 'sign-node', 'argon2', 'rotation', 'client-read']) {
    const [cpu] = report.ceilings[name].cpu ?? []
    assert.ok(cpu !== undefined && cpu.trees.harness > 0 && cpu.loadGenerator === undefined, `${name}: ${JSON.stringify(report.ceilings[name].cpu)}`)
  }
  assert.ok(report.ceilings.rotation.cpu[0].trees.postgres > 0, 'the rotation reads its Postgres')
  // A combined ceiling is combined round by round: one round in a quick run.
  assert.equal(report.ceilings['refresh-combined'].rounds.length, report.settings.rounds)
  const cc = report.ceilings['client-credentials-combined'].rate
  assert.ok(Math.abs(cc - 1 / (1 / signs + 1 / report.ceilings['client-read'].rate + 1 / report.ceilings['bare-token'].rate)) <= 1, 'one signature + one read + one request')
  assert.ok(report.machine.cores >= 1 && report.machine.node && report.machine.postgres)

  assert.ok(report.profile.busyMs > 0 && report.profile.functions.length > 0, 'the refresh profile has samples')
  assert.ok(report.profile.areas.some((/** @type {any} */ a) => a.area === 'tessera'), 'the profile sees our own code')
  assert.equal(report.profile.scenario, 'refresh')
  // --save-profile stores the summary under --out; the committed baseline is shown beside this run's.
  const saved = JSON.parse(await fs.readFile(path.join(out, 'profiles', 'smoke.json'), 'utf8'))
  assert.equal(saved.scenario, 'refresh')
  assert.match(saved.commit, /^[0-9a-f]{7,}(\+changes)?$|^unknown$/)
  assert.deepEqual([saved.busyMs, saved.areas, saved.functions], [report.profile.busyMs, report.profile.areas, report.profile.functions])
  assert.equal(report.profile.baseline.file, 'bench/profiles/before-refresh.json')
  assert.ok(report.profile.baseline.areas.length > 0)

  const markdown = await fs.readFile(path.join(out, 'REPORT.md'), 'utf8')
  for (const heading of ['## Scenarios', '## Targets (issue 12', "### Issue 9's ratios, for reading", '## Physical limits', '## Ceilings', '## Against the stack Tessera replaces', '## Where refresh spends its time', '## Machine and settings']) {
    assert.ok(markdown.includes(heading), heading)
  }
  assert.match(markdown, /^\| ceiling \| per second \| spread \| how it was measured \|$/m)
  assert.match(markdown, /^- \*\*bare-jwks\*\*: [\d,]+\/s \(cores: bare \d\.\d\d, (postgres \d\.\d\d, )?load generator \d\.\d\d, others -?\d\.\d\d; ms of CPU per answer: bare \d\.\d\d(, postgres \d\.\d\d)?\)\.$/m, 'each bare round with its cores')
  assert.match(markdown, /^\| jwks \| .+ \| \d+ % of [\d,]+ \(bare-jwks-one-process\), \d+ % of [\d,]+ \(bare-jwks-node\) \| /m, 'the JWKS row reads its ratios to the one-process route and to the node:http one')
  assert.match(markdown, /^Before: bench\/profiles\/before-refresh\.json, saved at .+ from commit \w+/m)
  assert.match(markdown, /^\| area \| % of busy, before \| % of busy, after \|$/m)
  assert.ok(markdown.includes('](report.svg)'))
  const svg = await fs.readFile(path.join(out, 'report.svg'), 'utf8')
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  assert.equal((svg.match(/<rect /g) ?? []).length, 1 + 2 * ran.length)
  assert.match(stdout, /^scenario +req\/s +rounds +p50 +p99 +errors/m)
  assert.match(stdout, /^(met|NOT met) +refresh ≥ 1,500\/s at 64 connections/m)
})

test('--profile-scenario names a scenario that runs, with the profile on', async () => {
  for (const args of [['--profile-scenario', 'nope'], ['--scenario', 'jwks', '--profile-scenario', 'me'], ['--profile-scenario', 'me', '--no-profile']]) {
    const { code, stderr } = await harness(args, {})
    assert.equal(code, 2, args.join(' '))
    assert.match(stderr, /^bench: --profile-scenario \S+: one of the scenarios run, with the profile on\n$/)
  }
})

test('an unknown scenario is refused before anything starts', async () => {
  const { code, stderr } = await harness(['--scenario', 'nope'], {})
  assert.equal(code, 2)
  assert.match(stderr, /unknown scenario nope; known: login, login-c64, refresh/)
})

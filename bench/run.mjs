#!/usr/bin/env node
/**
 * `make bench`: starts a real Tessera on a fresh Postgres, measures this
 * machine's ceilings, runs every scenario bounded in time (and in amount where
 * tokens are single-use), runs the scalable ones again on one HTTP worker,
 * profiles the refresh path, and writes REPORT.md, report.json and
 * report.svg. Only 127.0.0.1 is ever loaded. The run is six named steps:
 * prepare, ceilings, scenarios, scaling, profile, report.
 *
 *   node bench/run.mjs [--scenario NAME[,NAME]] [--quick] [--out DIR] [--no-scaling] [--no-profile] [--profile-scenario NAME] [--save-profile NAME]
 *   node bench/run.mjs --peer [--quick] [--out DIR]     (`make bench-peer`, lib/peer-compare.mjs)
 *   node bench/run.mjs --help
 * @module
 */
import { randomBytes } from 'node:crypto'
import { existsSync, promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startBareServer } from './lib/ceilings.mjs'
import { ALTERNATING_BESIDE, ceilingDefinitions } from './lib/ceiling-definitions.mjs'
import { ceilingRegistry } from './lib/ceiling-registry.mjs'
import { clientCredentialsScenario, registerBenchClient } from './lib/client-credentials.mjs'
import { freshDatabase } from './lib/database.mjs'
import { prepareFixtures } from './lib/fixtures.mjs'
import { startGateway } from './lib/gateway.mjs'
import { runLoad } from './lib/load.mjs'
import { comparePeer, peerSummary } from './lib/peer-compare.mjs'
import { locatePeer, peerUnavailable } from './lib/peer-stack.mjs'
import { PHYSICAL_BESIDE, physicalLimits } from './lib/physical.mjs'
import { childrenRunning, cpuSnapshot, harnessCpuSince, listenerPid, waitIdle } from './lib/proc-cpu.mjs'
import { PROFILES_DIR, loadProfile, profileClock, saveProfile, summarizeProfile } from './lib/profile.mjs'
import { consoleSummary, judgeTargets, loadAverage, machineFacts, writeReport } from './lib/report.mjs'
import { allRounds, bestRound, meets } from './lib/rounds.mjs'
import { SCENARIOS as BASE_SCENARIOS } from './lib/scenarios.mjs'
import { loadConfig } from './lib/service.mjs'
import { NOTES_ENTRY, startTessera } from './lib/tessera.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const started = Date.now()
const log = (/** @type {string} */ line) => process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`)
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s`

const HELP = `Usage: node bench/run.mjs [options]      (make bench, make bench-peer)

Benchmarks Tessera on 127.0.0.1 against this machine's ceilings, measured in the same run,
and writes bench/REPORT.md, report.json and report.svg.

  --scenario NAME[,NAME]  only these scenarios, with their ceilings (repeatable)
  --quick                 1-second runs: proves the harness works, numbers not to quote
  --out DIR               where the report goes (default: bench/)
  --no-scaling            skip the runs on one HTTP worker (TESSERA_WORKERS=1), which show what every core adds
  --no-profile            skip the CPU profile (of refresh, or of the first scenario chosen when refresh is not)
  --profile-scenario NAME profile this scenario (one of those run) instead
  --save-profile NAME     also store the profile's summary as profiles/NAME.json under --out (bench/profiles/
                          by default), a baseline for later runs: REPORT.md shows profiles/before-SCENARIO.json
                          (under --out, else bench/profiles/) beside the current profile
  --peer                  instead: Tessera side by side with the SimpleJWT stack (make bench-peer):
                          password login (16 and 64 connections), refresh and GET /v1/me against
                          /api/me/ (64), two alternating rounds of wrk -t1 10 s each (2 s with --quick),
                          with the CPU each stack used; writes REPORT-peer.md and report-peer.json.
                          Needs wrk, root, and the peer's Debian packages (its README); starts the
                          stack from PEER_DRF_DIR (default ../shared/peer-drf) and stops what it started.
  -h, --help              this text
`

/**
 * @typedef {object} Options
 * @property {string[]} wanted scenario names asked for (none: all)
 * @property {boolean} quick
 * @property {string} outDir
 * @property {boolean} scaling
 * @property {boolean} profile
 * @property {string | undefined} saveProfile
 * @property {string | undefined} profileScenario
 * @property {boolean} peer
 */

/** The command line, checked before anything starts; exits on --help and on a usage error. @returns {Options} */
function parseOptions () {
  const { values: args } = parseArgs({
    options: {
      scenario: { type: 'string', multiple: true },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      'no-scaling': { type: 'boolean', default: false },
      'no-profile': { type: 'boolean', default: false },
      'save-profile': { type: 'string' },
      'profile-scenario': { type: 'string' },
      peer: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  const fail = (/** @type {string} */ message) => {
    process.stderr.write(`bench: ${message}\n`)
    process.exit(2)
  }
  if (args.help) {
    process.stdout.write(HELP)
    process.exit(0)
  }
  const wanted = (args.scenario ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '')
  const known = [...BASE_SCENARIOS.map((s) => s.name), CLIENT_CREDENTIALS]
  for (const name of wanted) if (!known.includes(name)) fail(`unknown scenario ${name}; known: ${known.join(', ')}`)
  if (args.peer && wanted.length > 0) fail('--peer runs its own scenarios; --scenario does not apply')
  const saveProfile = args['save-profile']
  if (saveProfile !== undefined && !/^[a-z0-9][a-z0-9._-]*$/.test(saveProfile)) fail(`--save-profile ${saveProfile}: a name of lower-case letters, digits, '.', '_' and '-'`)
  if (saveProfile !== undefined && args['no-profile']) fail('--save-profile needs the profile: drop --no-profile')
  const profileScenario = args['profile-scenario']
  if (profileScenario !== undefined && (args['no-profile'] || !known.includes(profileScenario) || (wanted.length > 0 && !wanted.includes(profileScenario)))) {
    fail(`--profile-scenario ${profileScenario}: one of the scenarios run, with the profile on`)
  }
  return {
    wanted,
    quick: args.quick,
    outDir: path.resolve(args.out ?? path.join(ROOT, 'bench')),
    scaling: !args['no-scaling'],
    profile: !args['no-profile'],
    saveProfile,
    profileScenario,
    peer: args.peer
  }
}
const CLIENT_CREDENTIALS = 'client-credentials'

/** Below this many cores over a quarter second, a server is taken as idle between rounds: an idle instance uses 0.01–0.03. */
const SETTLED_CORES = 0.1

/** `make bench-peer`: its own run (lib/peer-compare.mjs). @param {Options} options @returns {Promise<number>} exit code */
async function peer (options) {
  const peerDir = locatePeer(ROOT, process.env)
  const peerRunDir = process.env.PEER_RUN_DIR || '/tmp/peer-drf-run'
  const reason = await peerUnavailable(peerDir, peerRunDir)
  if (reason !== undefined) {
    process.stderr.write(`bench --peer: cannot start the SimpleJWT stack: ${reason}\n`)
    return 2
  }
  try {
    const report = await comparePeer({ root: ROOT, out: options.outDir, quick: options.quick, peerDir, peerRunDir, databaseUrl: process.env.DATABASE_URL || undefined, log })
    process.stdout.write(`${peerSummary(report)}\n\nReport: ${path.relative(process.cwd(), path.join(options.outDir, 'REPORT-peer.md'))} (${elapsed()})\n`)
    return 0
  } catch (err) {
    process.stderr.write(`bench --peer: ${err instanceof Error ? err.stack : String(err)}\n`)
    return 1
  }
}

/**
 * What the steps share: the options, the processes started (stopped at the
 * end whatever happens), and what `prepare` made.
 * @typedef {object} Run
 * @property {Options} options
 * @property {import('./lib/scenarios.mjs').Settings & { ceilingRounds: number }} settings
 * @property {Record<string, string>} tesseraSettings
 * @property {Record<string, string>} tesseraEnv every instance's environment: the settings, the database, the KEK
 * @property {import('./lib/scenarios.mjs').Scenario[]} selected
 * @property {import('./lib/database.mjs').BenchDatabase} database
 * @property {import('./lib/tessera.mjs').TesseraProcess[]} servers Tessera instances, stopped at the end
 * @property {import('./lib/tessera.mjs').TesseraProcess[]} siblings notes, stopped at the end
 * @property {{ bare: Map<number, import('./lib/ceilings.mjs').BareServer>, gateway?: import('./lib/gateway.mjs').Gateway, fixtures?: import('./lib/fixtures.mjs').Fixtures }} started the rest that is stopped at the end
 * @property {(nodeArgs?: string[], extraEnv?: Record<string, string>) => Promise<import('./lib/tessera.mjs').TesseraProcess>} spawnTessera
 * @property {(server: import('./lib/tessera.mjs').TesseraProcess) => Promise<void>} stopTessera
 */

/** The run's settings: short ones for --quick, which proves the harness works. @param {Options} options */
function settingsFor (options) {
  // The cores Tessera's own `auto` counts (a CPU quota rounded up, not os.availableParallelism()'s floor):
  // the scenarios' instance runs with one HTTP worker and one hashing thread per core of this count.
  const { cores } = loadConfig({})
  const keyBits = Number(process.env.TESSERA_KEY_BITS ?? 2048)
  return options.quick
    // A login takes hundreds of milliseconds on a busy machine: the quick run gives it 2 s so some complete.
    ? { duration: 1, loginDuration: 2, warmup: 0.5, loginWarmup: 0.5, ceilingSeconds: 0.5, ceilingRounds: 1, rounds: 1, connections: 16, loginConnections: 2, users: 1000, keyBits, cores }
    // Three rounds of each scenario, alternating with its ceiling's: 3 s each keeps `make bench` near 6 minutes.
    // The first round of each (scenario and bare ceiling alike) is preceded by 3 s unmeasured: the targets
    // are steady rates, and a fresh instance's first seconds are V8 still compiling the route (docs/performance-history.md, "Session 5: refresh").
    // Login's is longer: 3 s are about 200 logins, against thousands of refreshes (docs/performance-history.md, "Session 7: login").
    : { duration: 3, loginDuration: 4, warmup: 3, loginWarmup: 15, ceilingSeconds: 2, ceilingRounds: 3, rounds: 3, connections: 64, loginConnections: 16, users: 1000, keyBits, cores }
}

const TOKEN_CONFIG = { issuer: 'http://tessera.bench', audience: ['api'], accessTtl: 15 * 60, simplejwtCompat: false }

/**
 * Step 1, prepare: a fresh database, the default Tessera instance, the
 * fixtures, and what the bare server must imitate (the JWKS, a real token
 * response). Returns the scenarios' context.
 * @param {Run} run
 */
async function prepare (run) {
  const { settings, database } = run
  const primary = await run.spawnTessera()
  log(`Tessera is ready at ${primary.url}; creating ${settings.users} users`)
  const fixtures = run.started.fixtures = await prepareFixtures({ url: database.url, kek: KEK, tokens: TOKEN_CONFIG, users: settings.users })

  const jwksResponse = await fetch(`${primary.url}/.well-known/jwks.json`)
  // The bare route answers with the same headers (the security headers, cache-control, a request id
  // of the same length): the ceiling is the same answer served by nothing but Fastify.
  const perResponse = new Set(['date', 'connection', 'keep-alive', 'content-length', 'content-type', 'etag', 'x-request-id', 'transfer-encoding'])
  const jwks = {
    body: await jwksResponse.text(),
    etag: jwksResponse.headers.get('etag') ?? '',
    headers: Object.fromEntries([...jwksResponse.headers].filter(([name]) => !perResponse.has(name))),
    requestIdLength: jwksResponse.headers.get('x-request-id')?.length ?? 0
  }
  // One real refresh: proves the minted tokens are accepted and gives the bare /token route its reply size.
  const [probe = ''] = await fixtures.refreshTokens(1)
  const probeResponse = await fetch(`${primary.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: probe }) })
  const tokenResponse = await probeResponse.text()
  if (!probeResponse.ok) throw new Error(`a minted refresh token was refused: ${probeResponse.status} ${tokenResponse}`)

  /** @type {Promise<{ token: string, userId: string, sessionId: string }[]> | undefined} */
  let accessTokens
  /** @type {Promise<string> | undefined} */
  let notesUrl
  /** @type {Promise<string> | undefined} */
  let gatewayUrl
  const startNotes = async () => {
    const notes = await startTessera({
      DATABASE_URL: database.url,
      NOTES_ISSUER: TOKEN_CONFIG.issuer,
      NOTES_JWKS_URL: `${primary.url}/.well-known/jwks.json`,
      NOTES_AUDIENCE: 'api',
      LOG_LEVEL: 'warn'
    }, { entry: NOTES_ENTRY, readyPath: '/healthz', logFile: path.join(ROOT, '.data', 'bench', `notes-${Date.now()}.log`) })
    run.siblings.push(notes)
    // notes has migrated its schema by the time it answers; every user gets one note to read back.
    await fixtures.sql("INSERT INTO notes.notes (owner, text) SELECT id::text, 'a note to read back' FROM users")
    return notes.url
  }
  const startGatewayOnce = async () => {
    const notes = existsSync(NOTES_ENTRY) ? await ctx.notes() : undefined
    // Under the system temp directory, not .data: started as root, Nginx's
    // workers run as `nobody`, who cannot enter a clone inside a closed (0700) directory.
    const gateway = run.started.gateway = await startGateway({ root: ROOT, dir: await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-bench-gateway-')), auth: [primary.url], notes })
    return gateway.url
  }
  // Beside each round's rate, what the machine gave it: the CPU of Tessera's instances, of notes, of the
  // embedded Postgres (a server elsewhere counts as none), and of everything else (docs/performance-history.md,
  // "Session 6: refresh through a run").
  const postgresPid = listenerPid(Number(new URL(database.url).port || 5432))
  /** @type {import('./lib/scenarios.mjs').Context} */
  const ctx = {
    settings,
    cpuTrees: () => {
      const tessera = run.servers.map((s) => s.pid)
      // The hashing process apart: a login's line then reads the hash's CPU beside the argon2 ceiling's.
      return { tessera, hashing: childrenRunning(tessera, 'hashing-process'), notes: run.siblings.map((s) => s.pid), postgres: postgresPid === undefined ? [] : [postgresPid] }
    },
    fixtures,
    root: ROOT,
    ceiling: async () => { throw new Error('the ceilings step has not run') },
    ceilingSoFar: async () => { throw new Error('the ceilings step has not run') },
    jwks,
    accessTokens: () => (accessTokens ??= fixtures.accessTokens(settings.users)),
    observed: {},
    notes: () => (notesUrl ??= startNotes()),
    gateway: () => (gatewayUrl ??= startGatewayOnce())
  }
  return { primary, ctx, probe, tokenResponse }
}

/**
 * Step 2, ceilings: every ceiling's definition, measured on first use (each
 * just before the first scenario judged against it) in rounds, best kept.
 * @param {Run} run @param {Awaited<ReturnType<typeof prepare>>} prepared
 */
function ceilings (run, { ctx, probe, tokenResponse }) {
  const { settings } = run
  const registry = ceilingRegistry({
    rounds: settings.ceilingRounds,
    log,
    // A ceiling measured here reports what the machine did meanwhile, as a bare route's rounds do.
    cpu: { start: cpuSnapshot, since: (start) => harnessCpuSince(start, ctx.cpuTrees?.() ?? {}), settle: async () => await settle(ctx) },
    definitions: ceilingDefinitions({
      databaseUrl: run.database.url,
      keyBits: settings.keyBits,
      cores: settings.cores,
      // The scenarios' instance runs with Tessera's default: one HTTP worker per core.
      workers: settings.cores,
      seconds: settings.ceilingSeconds,
      connections: settings.connections,
      jwks: ctx.jwks,
      tokenResponse,
      refreshToken: probe,
      sessions: ctx.accessTokens,
      login: { env: run.tesseraEnv, kek: KEK, usernames: () => ctx.fixtures.users.map((u) => u.username), inFlight: settings.loginConnections },
      log,
      // One bare server per layout, started once; the warm-up once per ceiling: later rounds find it warm.
      bareLoad: async (request, ok = [], round = 0, workers = 1) => {
        let bare = run.started.bare.get(workers)
        if (bare === undefined) {
          bare = await startBareServer({ databaseUrl: run.database.url, jwks: ctx.jwks.body, etag: ctx.jwks.etag, jwksHeaders: ctx.jwks.headers, requestIdLength: ctx.jwks.requestIdLength, tokenResponse, workers })
          run.started.bare.set(workers, bare)
        }
        const server = bare
        const result = await runLoad({ url: server.url, duration: settings.duration, warmup: round === 0 ? settings.warmup : 0, connections: settings.connections, cpu: () => ({ bare: [server.pid], postgres: ctx.cpuTrees?.().postgres ?? [] }), ...request }, ok)
        if (result.errors > 0) throw new Error(`the bare server answered errors: ${JSON.stringify(result.statuses)}`)
        return { rate: result.rps, ...(result.cpu === undefined ? {} : { cpu: result.cpu }) }
      }
    })
  })
  ctx.ceiling = registry.ceiling
  ctx.ceilingSoFar = registry.soFar
  return registry
}

/** Ceilings for reading beside a scenario's own (the smoke run measures them too: login-grant runs Tessera's password grant, which nothing else in a quick run does). */
const READ_BESIDE = {
  login: ['login-grant', 'login-combined'],
  refresh: ['refresh-combined-node', 'rotation-pgbench', 'verify-jose', 'verify-node', 'ipc-round-trip'],
  [CLIENT_CREDENTIALS]: ['ipc-round-trip', 'client-credentials-ipc']
}

/**
 * Waits until Tessera's instance, notes and the embedded Postgres are idle
 * before a round, so it does not share the machine with what the last round
 * left running: after a login round the instance still hashes the logins it
 * admitted (about a fifth of a core for a second, measured in the argon2
 * ceiling's rounds), after a refresh round Postgres writes. At most 5 s.
 * @param {import('./lib/scenarios.mjs').Context} ctx
 */
async function settle (ctx) {
  const trees = ctx.cpuTrees?.() ?? {}
  if (!await waitIdle(trees, { idle: SETTLED_CORES, intervalMs: 250, timeoutMs: 5000 })) log(`a server still used ${SETTLED_CORES} cores or more 5 s after the last round; measuring anyway`)
}

/**
 * Step 3, scenarios: each one measured as its ceiling is, on the default
 * instance (one HTTP worker per core): `rounds` rounds, each just after a
 * round of its ceiling (of every part, for a combined one; the first after
 * the scenario's warm-up too), so the two alternate and see the same
 * moments of the machine; the best of each is kept and both spreads are
 * reported. Nothing else runs meanwhile.
 * @param {Run} run @param {import('./lib/scenarios.mjs').Context} ctx @param {ReturnType<typeof ceilings>} registry @param {string} url
 */
async function scenarios (run, ctx, registry, url) {
  const results = []
  const skipped = []
  for (const scenario of run.selected) {
    const reason = scenario.unavailable?.(ROOT)
    if (reason !== undefined) {
      skipped.push({ name: scenario.name, reason })
      continue
    }
    const rounds = []
    const alternating = (/** @type {Record<string, string[]>} */ (ALTERNATING_BESIDE))[scenario.name] ?? []
    for (let round = 0; round < run.settings.rounds; round++) {
      // The ceiling's round runs after the scenario's warm-up, just before its measured run (login warms up for 15 s).
      let alternated = false
      const ceilingRound = async () => {
        for (const name of [scenario.ceiling, ...alternating]) await registry.round(name, round)
        await settle(ctx)
        alternated = true
        log(`scenario ${scenario.name}${run.settings.rounds > 1 ? ` (round ${round + 1})` : ''}…`)
      }
      if (round === 0) log(`scenario ${scenario.name}: warming up…`)
      const result = await scenario.run(ctx, [url], round, ceilingRound)
      if (!alternated) throw new Error(`scenario ${scenario.name} ran without its ceiling's round`)
      log(`scenario ${scenario.name}: ${result.rps} req/s, p99 ${result.p99} ms, ${result.errors} errors${result.shedP99 === undefined ? '' : `, ${result.shed} shed (p99 ${result.shedP99} ms)`}`)
      rounds.push(result)
    }
    const ceiling = await registry.result(scenario.ceiling)
    // The ceilings for reading beside it, after: they share parts with its own, whose rounds must alternate with the scenario's.
    const beside = [...(/** @type {Record<string, string[]>} */ (READ_BESIDE)[scenario.name] ?? []), ...(/** @type {Record<string, string[]>} */ (PHYSICAL_BESIDE)[scenario.name] ?? [])]
    for (const name of beside) if (registry.has(name)) await registry.ceiling(name)
    const best = bestRound(rounds)
    const every = allRounds(rounds)
    ctx.observed[scenario.name] = best.rps
    const ratio = Math.round((best.rps / ceiling.rate) * 1000) / 1000
    const readBeside = await Promise.all(alternating.map(async (name) => {
      const { rate, low } = await registry.result(name)
      return { ceiling: name, rate, low, ratio: Math.round((best.rps / rate) * 1000) / 1000 }
    }))
    log(`scenario ${scenario.name}: best ${best.rps} req/s (rounds ${rounds.map((r) => r.rps).join(', ')}), ${Math.round(ratio * 100)} % of ${scenario.ceiling}`)
    results.push({
      name: scenario.name,
      what: scenario.what,
      processes: 1,
      ...best,
      ...every,
      ceiling: scenario.ceiling,
      ceilingRate: ceiling.rate,
      ceilingLow: ceiling.low,
      ratio,
      ...(readBeside.length === 0 ? {} : { beside: readBeside }),
      target: scenario.target,
      ...(scenario.issue9Ratio === undefined ? {} : { issue9Ratio: scenario.issue9Ratio }),
      met: meets(scenario.target, { ...best, ...every }, ratio),
      ...(scenario.note === undefined ? {} : { note: scenario.note })
    })
  }
  return { results, skipped }
}

/**
 * Step 4, scaling: the scalable scenarios again on an instance with one HTTP
 * worker, to show what the others add.
 * @param {Run} run @param {import('./lib/scenarios.mjs').Context} ctx @param {Awaited<ReturnType<typeof scenarios>>['results']} results
 */
async function scaling (run, ctx, results) {
  const rows = []
  const scalable = run.selected.filter((s) => s.scales && results.some((r) => r.name === s.name))
  if (!run.options.scaling || run.settings.cores <= 1 || scalable.length === 0) return rows
  const single = await run.spawnTessera([], { TESSERA_WORKERS: '1' })
  for (const scenario of scalable) {
    log(`scaling ${scenario.name}: one HTTP worker…`)
    const all = /** @type {(typeof results)[number]} */ (results.find((r) => r.name === scenario.name))
    const result = await scenario.run(ctx, [single.url], 0)
    log(`scaling ${scenario.name}: ${result.rps} req/s on one worker, ${result.errors} errors`)
    rows.push({
      name: scenario.name,
      runs: [{ processes: 1, rps: result.rps, p99: result.p99, errors: result.errors }, { processes: run.settings.cores, rps: all.rps, p99: all.p99, errors: all.errors }],
      factor: Math.round((all.rps / result.rps) * 100) / 100,
      ratioAtN: Math.round((all.rps / all.ceilingRate) * 1000) / 1000
    })
  }
  await run.stopTessera(single)
  return rows
}

/**
 * Step 5, profile: `node --cpu-prof` on a fresh default instance serving
 * refresh (or, when refresh is not chosen, the first chosen scenario that
 * scales: the hot paths), summarized over the busiest process; saved when
 * asked, and shown beside the baseline bench/profiles/before-SCENARIO.json.
 * @param {Run} run @param {import('./lib/scenarios.mjs').Context} ctx @param {import('./lib/tessera.mjs').TesseraProcess} primary
 */
async function profile (run, ctx, primary) {
  const scenario = run.selected.find((s) => s.name === (run.options.profileScenario ?? 'refresh')) ?? run.selected.find((s) => s.scales && s.unavailable?.(ROOT) === undefined)
  if (!run.options.profile || scenario === undefined) return undefined
  const dir = path.join(ROOT, '.data', 'bench', 'profile')
  await fs.rm(dir, { recursive: true, force: true })
  // One instance at a time: the profiled one has the machine to itself.
  await run.stopTessera(primary)
  const profiled = await run.spawnTessera(['--cpu-prof', '--cpu-prof-dir', dir])
  log(`profiling ${scenario.name}…`)
  const from = profileClock()
  const result = await scenario.run(ctx, [profiled.url], 0)
  const to = profileClock()
  await run.stopTessera(profiled)
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.cpuprofile'))
  if (files.length === 0) throw new Error('the profiled server wrote no .cpuprofile')
  // One profile per process of the instance (primary, HTTP workers, hashing process): the busiest is an HTTP worker's.
  const summaries = await Promise.all(files.map(async (file) => ({ file, summary: await summarizeProfile(path.join(dir, file), { from, to }) })))
  const { file, summary } = summaries.reduce((a, b) => (b.summary.busyMs > a.summary.busyMs ? b : a))
  const current = { scenario: scenario.name, rps: result.rps, seconds: result.seconds, windowSeconds: Math.round((to - from) / 1e4) / 100, errors: result.errors, file: path.relative(ROOT, path.join(dir, file)), ...summary }
  // The baseline beside the report (--out), else the committed one.
  const baselineFile = [path.join(run.options.outDir, 'profiles', `before-${scenario.name}.json`), path.join(PROFILES_DIR, `before-${scenario.name}.json`)].find((f) => existsSync(f))
  const baseline = baselineFile === undefined ? undefined : { ...await loadProfile(baselineFile), file: path.relative(ROOT, baselineFile) }
  if (run.options.saveProfile !== undefined) {
    const saved = await saveProfile(path.join(run.options.outDir, 'profiles', `${run.options.saveProfile}.json`), current, { root: ROOT, load: loadAverage() })
    log(`profile saved as ${path.relative(process.cwd(), saved)}`)
  }
  return { ...current, ...(baseline === undefined ? {} : { baseline }) }
}

/**
 * Step 6, report: REPORT.md, report.json and report.svg, and the table printed.
 * @param {Run} run
 * @param {{ loadBefore: number[], registry: ReturnType<typeof ceilings>, scenarioResults: Awaited<ReturnType<typeof scenarios>>, scaling: Awaited<ReturnType<typeof scaling>>, profile: Awaited<ReturnType<typeof profile>> }} measured
 */
async function report (run, { loadBefore, registry, scenarioResults, scaling, profile }) {
  const ceilings = await registry.all()
  const { results, skipped } = scenarioResults
  const written = {
    generatedAt: new Date().toISOString(),
    machine: machineFacts({ postgres: run.database.version, loadBefore, cores: run.settings.cores }),
    database: { source: run.database.source, settings: run.database.settings },
    settings: { ...run.settings, quick: run.options.quick, tessera: { ...run.tesseraSettings, workers: `auto (${run.settings.cores}), then 1 for scaling` } },
    ceilings,
    scenarios: results,
    skipped,
    scaling,
    profile,
    physical: physicalLimits(results, ceilings),
    targets: judgeTargets(results, ceilings)
  }
  await writeReport(run.options.outDir, written)
  process.stdout.write(`${consoleSummary(written)}\n\nReport: ${path.relative(process.cwd(), path.join(run.options.outDir, 'REPORT.md')) || path.join(run.options.outDir, 'REPORT.md')} (${elapsed()})\n`)
}

const KEK = randomBytes(32)

/** `make bench`: the six steps, and everything started stopped again. @param {Options} options @returns {Promise<number>} exit code */
async function bench (options) {
  const settings = settingsFor(options)
  /** @type {Promise<string> | undefined} */
  let benchClientSecret
  // The client is registered on first use, once the database exists.
  const all = [...BASE_SCENARIOS, clientCredentialsScenario(() => (benchClientSecret ??= registerBenchClient(database.url)))]
  const tesseraSettings = {
    TESSERA_ISSUER: TOKEN_CONFIG.issuer,
    TESSERA_AUDIENCE: 'api',
    TESSERA_ACCESS_TTL: '15m',
    TESSERA_KEY_BITS: String(settings.keyBits),
    // One client address sends every request; the per-IP limit would measure itself.
    TESSERA_RATE_LIMIT: '1000000',
    LOG_LEVEL: 'warn',
    // The smoke run checks the harness on whatever machine runs the tests: pressure shedding stays off there.
    ...(options.quick ? { TESSERA_MAX_EVENT_LOOP_DELAY_MS: '0' } : {})
  }
  const loadBefore = loadAverage()
  const database = await freshDatabase({ root: ROOT, databaseUrl: process.env.DATABASE_URL || undefined, log })
  const env = { ...tesseraSettings, DATABASE_URL: database.url, TESSERA_KEK: KEK.toString('base64url'), TESSERA_DATA_DIR: path.join(ROOT, '.data', 'bench', 'tessera') }
  /** @type {Run} */
  const run = {
    options,
    settings,
    tesseraSettings,
    tesseraEnv: env,
    selected: all.filter((s) => options.wanted.length === 0 || options.wanted.includes(s.name)),
    database,
    servers: [],
    siblings: [],
    started: { bare: new Map() },
    spawnTessera: async (nodeArgs = [], extraEnv = {}) => {
      const server = await startTessera({ ...env, ...extraEnv }, { nodeArgs, logFile: path.join(ROOT, '.data', 'bench', `tessera-${run.servers.length + 1}-${Date.now()}.log`) })
      run.servers.push(server)
      return server
    },
    stopTessera: async (server) => {
      await server.stop()
      run.servers.splice(run.servers.indexOf(server), 1)
    }
  }
  try {
    const prepared = await prepare(run)
    const registry = ceilings(run, prepared)
    const scenarioResults = await scenarios(run, prepared.ctx, registry, prepared.primary.url)
    const scaled = await scaling(run, prepared.ctx, scenarioResults.results)
    const profiled = await profile(run, prepared.ctx, prepared.primary)
    await report(run, { loadBefore, registry, scenarioResults, scaling: scaled, profile: profiled })
    return 0
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`)
    for (const server of [...run.servers, ...run.siblings]) process.stderr.write(server.output())
    return 1
  } finally {
    await run.started.fixtures?.close()
    for (const bare of run.started.bare.values()) await bare.stop()
    await run.started.gateway?.stop()
    for (const server of [...run.siblings, ...run.servers]) await server.stop()
    await database.close()
  }
}

const options = parseOptions()
process.exit(options.peer ? await peer(options) : await bench(options))

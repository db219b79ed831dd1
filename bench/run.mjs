#!/usr/bin/env node
/**
 * `make bench`: starts a real Tessera on a fresh Postgres, measures this
 * machine's ceilings, runs every scenario bounded in time (and in amount where
 * tokens are single-use), runs the scalable ones again on one process per
 * core, profiles the refresh path, and writes REPORT.md, report.json and
 * report.svg. Only 127.0.0.1 is ever loaded.
 *
 *   node bench/run.mjs [--scenario NAME[,NAME]] [--quick] [--out DIR] [--no-scaling] [--no-profile]
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
import { argon2Rate, combinedRefreshCeiling, pgbenchRotationRate, rotationRate, signingRates, startBareServer, verifyRates } from './lib/ceilings.mjs'
import { freshDatabase } from './lib/database.mjs'
import { startGateway } from './lib/gateway.mjs'
import { prepareFixtures } from './lib/fixtures.mjs'
import { runLoad } from './lib/load.mjs'
import { profileClock, summarizeProfile } from './lib/profile.mjs'
import { comparePeer, peerSummary } from './lib/peer-compare.mjs'
import { locatePeer, peerUnavailable } from './lib/peer-stack.mjs'
import { PHYSICAL_BESIDE, physicalCeilings, physicalLimits } from './lib/physical.mjs'
import { consoleSummary, loadAverage, machineFacts, writeReport } from './lib/report.mjs'
import { SCENARIOS as BASE_SCENARIOS } from './lib/scenarios.mjs'
import { clientCredentialsCeilings, clientCredentialsScenario, registerBenchClient } from './lib/client-credentials.mjs'
import { NOTES_ENTRY, startTessera } from './lib/tessera.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const started = Date.now()
const log = (/** @type {string} */ line) => process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`)

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    'no-scaling': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    peer: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false }
  }
})

if (args.help) {
  process.stdout.write(`Usage: node bench/run.mjs [options]      (make bench, make bench-peer)

Benchmarks Tessera on 127.0.0.1 against this machine's ceilings, measured in the same run,
and writes bench/REPORT.md, report.json and report.svg.

  --scenario NAME[,NAME]  only these scenarios, with their ceilings (repeatable)
  --quick                 1-second runs: proves the harness works, numbers not to quote
  --out DIR               where the report goes (default: bench/)
  --no-scaling            skip the runs on one HTTP worker (TESSERA_WORKERS=1), which show what every core adds
  --no-profile            skip the CPU profile of the refresh path
  --peer                  instead: Tessera side by side with the SimpleJWT stack (make bench-peer):
                          password login (16 and 64 connections), refresh and GET /v1/me against
                          /api/me/ (64), two alternating rounds of wrk -t1 10 s each (2 s with --quick),
                          with the CPU each stack used; writes REPORT-peer.md and report-peer.json.
                          Needs wrk, root, and the peer's Debian packages (its README); starts the
                          stack from PEER_DRF_DIR (default ../shared/peer-drf) and stops what it started.
  -h, --help              this text
`)
  process.exit(0)
}

/** @type {Promise<string> | undefined} */
let benchClientSecret
// The client is registered on first use, once the database (declared below) exists.
const SCENARIOS = [...BASE_SCENARIOS, clientCredentialsScenario(() => (benchClientSecret ??= registerBenchClient(database.url)))]
const wanted = (args.scenario ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '')
for (const name of wanted) {
  if (!SCENARIOS.some((s) => s.name === name)) {
    process.stderr.write(`bench: unknown scenario ${name}; known: ${SCENARIOS.map((s) => s.name).join(', ')}\n`)
    process.exit(2)
  }
}
if (args.peer) {
  if (wanted.length > 0) {
    process.stderr.write('bench: --peer runs its own scenarios; --scenario does not apply\n')
    process.exit(2)
  }
  const peerDir = locatePeer(ROOT, process.env)
  const peerRunDir = process.env.PEER_RUN_DIR || '/tmp/peer-drf-run'
  const reason = await peerUnavailable(peerDir, peerRunDir)
  if (reason !== undefined) {
    process.stderr.write(`bench --peer: cannot start the SimpleJWT stack: ${reason}\n`)
    process.exit(2)
  }
  try {
    const report = await comparePeer({ root: ROOT, out: path.resolve(args.out ?? path.join(ROOT, 'bench')), quick: args.quick, peerDir, peerRunDir, databaseUrl: process.env.DATABASE_URL || undefined, log })
    process.stdout.write(`${peerSummary(report)}\n\nReport: ${path.join(args.out ?? 'bench', 'REPORT-peer.md')} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`)
    process.exit(0)
  } catch (err) {
    process.stderr.write(`bench --peer: ${err instanceof Error ? err.stack : String(err)}\n`)
    process.exit(1)
  }
}

const selected = SCENARIOS.filter((s) => wanted.length === 0 || wanted.includes(s.name))
const cores = os.availableParallelism()
const keyBits = Number(process.env.TESSERA_KEY_BITS ?? 2048)
const outDir = path.resolve(args.out ?? path.join(ROOT, 'bench'))

/** @type {import('./lib/scenarios.mjs').Settings} */
const settings = args.quick
  // A login takes hundreds of milliseconds on a busy machine: the quick run gives it 2 s so some complete.
  ? { duration: 1, loginDuration: 2, warmup: 0.5, ceilingSeconds: 0.5, connections: 16, loginConnections: 2, users: 1000, keyBits, cores }
  : { duration: 5, loginDuration: 5, warmup: 1, ceilingSeconds: 3, connections: 64, loginConnections: 16, users: 1000, keyBits, cores }

const kek = randomBytes(32)
const tokenConfig = { issuer: 'http://tessera.bench', audience: ['api'], accessTtl: 15 * 60 }
const tesseraSettings = {
  TESSERA_ISSUER: tokenConfig.issuer,
  TESSERA_AUDIENCE: 'api',
  TESSERA_ACCESS_TTL: '15m',
  TESSERA_KEY_BITS: String(keyBits),
  // One client address sends every request; the per-IP limit would measure itself.
  TESSERA_RATE_LIMIT: '1000000',
  LOG_LEVEL: 'warn',
  // The smoke run checks the harness on whatever machine runs the tests: pressure shedding stays off there.
  ...(args.quick ? { TESSERA_MAX_EVENT_LOOP_DELAY_MS: '0' } : {})
}

const loadBefore = loadAverage()
const database = await freshDatabase({ root: ROOT, databaseUrl: process.env.DATABASE_URL || undefined, log })
/** @type {import('./lib/tessera.mjs').TesseraProcess[]} */
const servers = []
/** @type {import('./lib/tessera.mjs').TesseraProcess[]} notes */
const siblings = []
/** @type {import('./lib/ceilings.mjs').BareServer | undefined} */
let bare
/** @type {import('./lib/gateway.mjs').Gateway | undefined} */
let gateway
/** @type {import('./lib/fixtures.mjs').Fixtures | undefined} */
let fixtures
let exitCode = 0
try {
  const env = { ...tesseraSettings, DATABASE_URL: database.url, TESSERA_KEK: kek.toString('base64url'), TESSERA_DATA_DIR: path.join(ROOT, '.data', 'bench', 'tessera') }
  const spawnTessera = async (/** @type {string[]} */ nodeArgs = [], /** @type {Record<string, string>} */ extraEnv = {}) => {
    const server = await startTessera({ ...env, ...extraEnv }, { nodeArgs, logFile: path.join(ROOT, '.data', 'bench', `tessera-${servers.length + 1}-${Date.now()}.log`) })
    servers.push(server)
    return server
  }
  const primary = await spawnTessera()
  log(`Tessera is ready at ${primary.url}; creating ${settings.users} users`)
  const fx = fixtures = await prepareFixtures({ url: database.url, kek, tokens: tokenConfig, users: settings.users })

  const jwksResponse = await fetch(`${primary.url}/.well-known/jwks.json`)
  const jwks = { body: await jwksResponse.text(), etag: jwksResponse.headers.get('etag') ?? '' }
  // One real refresh: proves the minted tokens are accepted and gives the bare /token route its reply size.
  const [probe] = await fx.refreshTokens(1)
  const probeResponse = await fetch(`${primary.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: probe }) })
  const tokenResponse = await probeResponse.text()
  if (!probeResponse.ok) throw new Error(`a minted refresh token was refused: ${probeResponse.status} ${tokenResponse}`)

  /** @type {Promise<{ token: string, userId: string, sessionId: string }[]> | undefined} */
  let accessTokens
  const ctxAccessTokens = () => (accessTokens ??= fx.accessTokens(settings.users))

  const bareLoad = async (/** @type {Omit<import('./lib/load.mjs').LoadOptions, 'url' | 'duration' | 'warmup' | 'connections'>} */ options, /** @type {number[]} */ ok = []) => {
    bare ??= await startBareServer({ databaseUrl: database.url, jwks: jwks.body, etag: jwks.etag, tokenResponse })
    const result = await runLoad({ url: bare.url, duration: settings.duration, warmup: settings.warmup, connections: settings.connections, ...options }, ok)
    if (result.errors > 0) throw new Error(`the bare server answered errors: ${JSON.stringify(result.statuses)}`)
    return result.rps
  }

  /** @type {Record<string, { what: string, measure: () => Promise<number> }>} */
  const definitions = {
    ...clientCredentialsCeilings({ url: database.url, seconds: settings.ceilingSeconds, ceiling: async (name) => await ceiling(name) }),
    'sign-jose': {
      what: `jose SignJWT RS256 (${keyBits}-bit), 64 in flight (WebCrypto on libuv's pool, every core)`,
      measure: async () => (await signatures()).jose
    },
    'sign-node': {
      what: `node:crypto.sign RS256 (${keyBits}-bit) with a KeyObject, synchronously on one thread, as Tessera signs (tokens/jws.ts)`,
      measure: async () => (await signatures()).nodeCrypto
    },
    argon2: {
      what: `argon2id verify at Tessera's parameters (19 MiB, t=2, p=1), ${cores} at once (Tessera's hashing concurrency = cores)`,
      measure: async () => await argon2Rate(cores, settings.ceilingSeconds)
    },
    rotation: {
      what: "refresh decisions as Tessera makes them: grants/refresh.ts's refreshDecision, one call of the SQL function tessera_refresh_decision (lock, check, mark used, insert the successor, slide; one round trip) through Tessera's Kysely connection, 20 chains at once on a pool of 20 like Tessera's",
      measure: async () => await rotationRate(database.url, 20, settings.ceilingSeconds)
    },
    'rotation-pgbench': {
      what: "the same function from Postgres's own point of view: pgbench, 20 clients, extended protocol, each rotating its own chain (falls back to the rotation ceiling when pgbench is not installed): for reading",
      measure: async () => {
        const rate = await pgbenchRotationRate(database.url, 20, settings.ceilingSeconds)
        if (rate !== undefined) return rate
        log('pgbench is not installed: rotation-pgbench repeats the rotation ceiling')
        return await ceiling('rotation')
      }
    },
    'verify-jose': {
      what: `jose jwtVerify of a refresh token (${keyBits}-bit), 64 in flight, as tokens/verify-refresh.ts does: for reading`,
      measure: async () => (await verifications()).jose
    },
    'verify-node': {
      what: 'node:crypto.verify of the same signature on one thread, without claim checks: for reading',
      measure: async () => (await verifications()).nodeCrypto
    },
    'bare-token': {
      what: `bare Fastify process: POST with a refresh-sized JSON body, answering a token-response-sized body (${tokenResponse.length} B), same autocannon settings`,
      measure: async () => await bareLoad({ method: 'POST', path: '/token', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: probe }) })
    },
    'refresh-combined': {
      what: 'one refresh = 2 signatures (sign-jose ÷ 2) + 1 rotation transaction + 1 request (bare-token), used one after another: 1/(2/sign + 1/rotation + 1/request)',
      measure: async () => combinedRefreshCeiling({ signs: await ceiling('sign-jose'), transactions: await ceiling('rotation'), requests: await ceiling('bare-token') })
    },
    'refresh-combined-node': {
      what: 'the same with sign-node: what one process signing on its event loop allows (for reading; the target uses refresh-combined)',
      measure: async () => combinedRefreshCeiling({ signs: await ceiling('sign-node'), transactions: await ceiling('rotation'), requests: await ceiling('bare-token') })
    },
    'bare-jwks': {
      what: `bare Fastify process answering Tessera's JWKS body (${jwks.body.length} B) with its headers, same autocannon settings`,
      measure: async () => await bareLoad({ path: '/jwks' })
    },
    'bare-jwks-304': {
      what: 'the same bare route with If-None-Match: 304, no body',
      measure: async () => await bareLoad({ path: '/jwks', headers: { 'if-none-match': jwks.etag } }, [304])
    },
    'bare-me': {
      what: "bare Fastify process doing /v1/me's one-row read (users JOIN sessions by ids, pool of 20) for a random one of the same sessions",
      measure: async () => {
        const pairs = await ctxAccessTokens()
        return await bareLoad({
          path: '/me',
          setupRequest: (request) => {
            const pair = pairs[Math.floor(Math.random() * pairs.length)]
            return { ...request, headers: { ...request.headers, 'x-user-id': pair.userId, 'x-session-id': pair.sessionId } }
          }
        })
      }
    }
  }
  Object.assign(definitions, physicalCeilings({ keyBits, cores, seconds: settings.ceilingSeconds, ceiling: async (name) => await ceiling(name) }))
  /** @type {Promise<{ jose: number, nodeCrypto: number }> | undefined} */
  let signing
  const signatures = () => (signing ??= signingRates(keyBits, settings.ceilingSeconds))
  /** @type {Promise<{ jose: number, nodeCrypto: number }> | undefined} */
  let verifying
  const verifications = () => (verifying ??= verifyRates(keyBits, settings.ceilingSeconds))
  /** @type {Map<string, Promise<number>>} */
  const measured = new Map()
  const ceiling = async (/** @type {string} */ name) => {
    if (!measured.has(name)) {
      const definition = definitions[name]
      if (definition === undefined) throw new Error(`no ceiling named ${name}`)
      measured.set(name, (async () => {
        log(`ceiling ${name}…`)
        const rate = await definition.measure()
        log(`ceiling ${name}: ${rate}/s`)
        return rate
      })())
    }
    return await /** @type {Promise<number>} */ (measured.get(name))
  }

  /** @type {Promise<string> | undefined} */
  let notesUrl
  const startNotes = async () => {
    const notes = await startTessera({
      DATABASE_URL: database.url,
      NOTES_ISSUER: tokenConfig.issuer,
      NOTES_JWKS_URL: `${primary.url}/.well-known/jwks.json`,
      NOTES_AUDIENCE: 'api',
      LOG_LEVEL: 'warn'
    }, { entry: NOTES_ENTRY, readyPath: '/healthz', logFile: path.join(ROOT, '.data', 'bench', `notes-${Date.now()}.log`) })
    siblings.push(notes)
    // notes has migrated its schema by the time it answers; every user gets one note to read back.
    await fx.sql("INSERT INTO notes.notes (owner, text) SELECT id::text, 'a note to read back' FROM users")
    return notes.url
  }

  /** @type {import('./lib/scenarios.mjs').Context} */
  /** @type {Promise<string> | undefined} */
  let gatewayUrl
  const startGatewayOnce = async () => {
    const notes = existsSync(NOTES_ENTRY) ? await ctx.notes() : undefined
    // Under the system temp directory, not .data: started as root, Nginx's
    // workers run as `nobody`, who cannot enter a clone inside a closed (0700) directory.
    gateway = await startGateway({ root: ROOT, dir: await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-bench-gateway-')), auth: [primary.url], notes })
    return gateway.url
  }
  const ctx = { settings, fixtures: fx, root: ROOT, ceiling, jwks, accessTokens: ctxAccessTokens, observed: {}, notes: () => (notesUrl ??= startNotes()), gateway: () => (gatewayUrl ??= startGatewayOnce()) }

  const scenarioResults = []
  const skipped = []
  for (const scenario of selected) {
    const reason = scenario.unavailable?.(ROOT)
    if (reason !== undefined) {
      skipped.push({ name: scenario.name, reason })
      continue
    }
    // The ceiling first, so nothing else runs while the scenario is measured.
    const ceilingRate = await ceiling(scenario.ceiling)
    // Ceilings for reading only (docs/performance.md); the smoke run leaves them out.
    if (scenario.name === 'refresh' && !args.quick) {
      for (const name of ['refresh-combined-node', 'rotation-pgbench', 'verify-jose', 'verify-node']) await ceiling(name)
    }
    // The physical limits beside the ceilings this scenario is judged against (lib/physical.mjs).
    for (const name of PHYSICAL_BESIDE[scenario.name] ?? []) if (name in definitions) await ceiling(name)
    log(`scenario ${scenario.name}…`)
    const result = await scenario.run(ctx, [primary.url])
    ctx.observed[scenario.name] = result.rps
    const ratio = Math.round((result.rps / ceilingRate) * 1000) / 1000
    log(`scenario ${scenario.name}: ${result.rps} req/s, p99 ${result.p99} ms, ${result.errors} errors, ${Math.round(ratio * 100)} % of ${scenario.ceiling}`)
    scenarioResults.push({
      name: scenario.name,
      what: scenario.what,
      processes: 1,
      ...result,
      ceiling: scenario.ceiling,
      ceilingRate,
      ratio,
      target: scenario.target,
      met: ratio >= scenario.target && result.errors === 0,
      ...(scenario.note === undefined ? {} : { note: scenario.note })
    })
  }

  const scaling = []
  const scalable = selected.filter((s) => s.scales && scenarioResults.some((r) => r.name === s.name))
  if (!args['no-scaling'] && cores > 1 && scalable.length > 0) {
    // The scenarios above ran on the default instance (one HTTP worker per core); the same instance with one worker shows what the others add.
    const single = await spawnTessera([], { TESSERA_WORKERS: '1' })
    for (const scenario of scalable) {
      log(`scaling ${scenario.name}: one HTTP worker…`)
      const all = /** @type {any} */ (scenarioResults.find((r) => r.name === scenario.name))
      const result = await scenario.run(ctx, [single.url])
      log(`scaling ${scenario.name}: ${result.rps} req/s on one worker, ${result.errors} errors`)
      scaling.push({
        name: scenario.name,
        runs: [{ processes: 1, rps: result.rps, p99: result.p99, errors: result.errors }, { processes: cores, rps: all.rps, p99: all.p99, errors: all.errors }],
        factor: Math.round((all.rps / result.rps) * 100) / 100,
        ratioAtN: Math.round((all.rps / all.ceilingRate) * 1000) / 1000
      })
    }
    await single.stop()
    servers.splice(servers.indexOf(single), 1)
  }

  let profile
  const refresh = SCENARIOS.find((s) => s.name === 'refresh')
  if (!args['no-profile'] && refresh !== undefined && selected.includes(refresh)) {
    const dir = path.join(ROOT, '.data', 'bench', 'profile')
    await fs.rm(dir, { recursive: true, force: true })
    await primary.stop()
    servers.splice(servers.indexOf(primary), 1)
    const profiled = await spawnTessera(['--cpu-prof', '--cpu-prof-dir', dir])
    log('profiling the refresh path…')
    const from = profileClock()
    const result = await refresh.run(ctx, [profiled.url])
    const to = profileClock()
    await profiled.stop()
    servers.splice(servers.indexOf(profiled), 1)
    const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.cpuprofile'))
    if (files.length === 0) throw new Error('the profiled server wrote no .cpuprofile')
    // One profile per process of the instance (primary, HTTP workers, hashing process): the busiest is an HTTP worker's.
    const summaries = await Promise.all(files.map(async (file) => ({ file, summary: await summarizeProfile(path.join(dir, file), { from, to }) })))
    const { file, summary } = summaries.reduce((a, b) => (b.summary.busyMs > a.summary.busyMs ? b : a))
    profile = { rps: result.rps, seconds: result.seconds, windowSeconds: Math.round((to - from) / 1e4) / 100, errors: result.errors, file: path.relative(ROOT, path.join(dir, file)), ...summary }
  }

  /** @type {Record<string, { rate: number, what: string }>} */
  const ceilings = {}
  for (const [name, rate] of measured) ceilings[name] = { rate: await rate, what: definitions[name].what }
  const byName = (/** @type {string} */ name) => scenarioResults.find((r) => r.name === name)
  const target = (/** @type {string} */ text, /** @type {string[]} */ names) => {
    const rows = names.map(byName).filter((r) => r !== undefined)
    if (rows.length === 0) return []
    return [{
      text,
      measured: rows.map((r) => `${r.name}: ${r.rps.toLocaleString('en-US')} of ${r.ceilingRate.toLocaleString('en-US')}/s = ${Math.round(r.ratio * 100)} %`).join('; '),
      met: rows.every((r) => r.ratio >= r.target)
    }]
  }
  const report = {
    generatedAt: new Date().toISOString(),
    machine: machineFacts({ postgres: database.version, loadBefore }),
    database: { source: database.source, settings: database.settings },
    settings: { ...settings, quick: args.quick, tessera: { ...tesseraSettings, workers: `auto (${cores}), then 1 for scaling` } },
    ceilings,
    scenarios: scenarioResults,
    skipped,
    scaling,
    profile,
    physical: physicalLimits(scenarioResults, ceilings),
    targets: [
      ...target('refresh ≥ 70 % of the combined ceiling', ['refresh']),
      ...target('login ≥ 85 % of the argon2 ceiling', ['login']),
      ...target('JWKS ≥ 80 % of the bare route (200 and 304)', ['jwks', 'jwks-304']),
      ...target('/v1/me ≥ 60 % of the bare route doing the same read', ['me']),
      ...target('client_credentials ≥ 60 % of one signature + one indexed read + one request', ['client-credentials']),
      ...(scenarioResults.length === 0
        ? []
        : [{ text: 'zero errors in every scenario', measured: scenarioResults.map((r) => `${r.name}: ${r.errors}`).join(', '), met: scenarioResults.every((r) => r.errors === 0) }])
    ]
  }
  await writeReport(outDir, report)
  process.stdout.write(`${consoleSummary(report)}\n\nReport: ${path.relative(process.cwd(), path.join(outDir, 'REPORT.md')) || path.join(outDir, 'REPORT.md')} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`)
} catch (err) {
  exitCode = 1
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`)
  for (const server of [...servers, ...siblings]) process.stderr.write(server.output())
} finally {
  await fixtures?.close()
  await bare?.stop()
  await gateway?.stop()
  for (const server of [...siblings, ...servers]) await server.stop()
  await database.close()
}
process.exit(exitCode)

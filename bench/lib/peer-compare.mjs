/**
 * `make bench-peer` (`node bench/run.mjs --peer`): Tessera side by side with
 * the SimpleJWT stack it replaces, in one run, with one load generator (wrk
 * and bench/wrk/pool.lua) and the same settings for both, alternating the two
 * stacks in every scenario and the order between rounds. Tessera runs as
 * `make run` starts it (default settings) on a fresh database, with only the
 * per-IP limit raised because every request comes from one address; the peer
 * runs as issue 12 measured it (3 sync Gunicorn workers, keys pre-loaded).
 * Besides req/s and latency, each run records the CPU each stack used
 * (/proc), and the physical limits of this machine are measured first.
 * Writes REPORT-peer.md and report-peer.json.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freshDatabase } from './database.mjs'
import { PASSWORD, prepareFixtures } from './fixtures.mjs'
import { PEER_SETTINGS, startPeer } from './peer-stack.mjs'
import { loadAverage, machineFacts, textTable } from './report.mjs'
import { argon2AllCores, opensslSigning, signingAllCores } from './physical.mjs'
import { coresBetween, cpuSnapshot, listenerPid, waitIdle } from './proc-cpu.mjs'
import { longestWaitMs, scrapeQueueWaits } from './queue-wait.mjs'
import { loadConfig } from './service.mjs'
import { startTessera } from './tessera.mjs'
import { WRK_TIMEOUT, runWrk, wrkCommand } from './wrk.mjs'

/**
 * @typedef {import('./wrk.mjs').WrkOptions} WrkOptions
 * @typedef {'tessera' | 'peer'} Stack
 * @typedef {Pick<WrkOptions, 'method' | 'path' | 'kind' | 'mode'> & { lines: (count: number) => Promise<string[]> }} Load
 * @typedef {{ name: string, connections: number, target: number, tessera: Load, peer: Load, singleUse: boolean }} PeerScenario
 */

/** What `make run` issues by default (config.ts): the minted tokens must match it. */
const TESSERA_TOKENS = { issuer: 'http://127.0.0.1:8080', audience: ['api'], accessTtl: 300, simplejwtCompat: false }
const USERS = 1000
const STACK_NAMES = { tessera: 'Tessera', peer: 'SimpleJWT stack' }

/** The same random sequence of user numbers for both stacks' login pools. */
function userSequence () {
  return Array.from({ length: USERS }, () => Math.floor(Math.random() * USERS))
}

/**
 * @param {import('./fixtures.mjs').Fixtures} fx
 * @param {import('./peer-stack.mjs').PeerStack} peer
 * @param {string} tmp
 * @returns {PeerScenario[]}
 */
function scenarios (fx, peer, tmp) {
  const order = userSequence()
  let minted = 0
  /** @param {'refresh' | 'access'} kind @param {number} count */
  const peerTokens = async (kind, count) => {
    const file = path.join(tmp, `peer-${kind}-${++minted}.raw`)
    await peer.mint(kind, count, file)
    return (await fs.readFile(file, 'utf8')).split('\n').filter((l) => l !== '')
  }
  const tesseraLogin = { method: 'POST', path: '/oauth/token', kind: 'body', mode: 'cycle', lines: async () => order.map((i) => JSON.stringify({ grant_type: 'password', username: fx.users[i].username, password: PASSWORD })) }
  const peerLogin = { method: 'POST', path: '/api/token/', kind: 'body', mode: 'cycle', lines: async () => order.map((i) => JSON.stringify({ username: `user${i}`, password: PASSWORD })) }
  return /** @type {PeerScenario[]} */ ([
    { name: 'login', connections: 16, target: 1, singleUse: false, tessera: tesseraLogin, peer: peerLogin },
    { name: 'login', connections: 64, target: 1, singleUse: false, tessera: tesseraLogin, peer: peerLogin },
    {
      name: 'refresh',
      connections: 64,
      target: 3,
      singleUse: true,
      tessera: { method: 'POST', path: '/oauth/token', kind: 'body', mode: 'once', lines: async (n) => (await fx.refreshTokens(n)).map((t) => JSON.stringify({ grant_type: 'refresh_token', refresh_token: t })) },
      peer: { method: 'POST', path: '/api/token/refresh/', kind: 'body', mode: 'once', lines: async (n) => (await peerTokens('refresh', n)).map((t) => JSON.stringify({ refresh: t })) }
    },
    {
      name: 'me',
      connections: 64,
      target: 3,
      singleUse: false,
      // Access tokens live 5 minutes on both stacks: minted right before each run.
      tessera: { method: 'GET', path: '/v1/me', kind: 'bearer', mode: 'cycle', lines: async () => (await fx.accessTokens(USERS)).map((a) => a.token) },
      peer: { method: 'GET', path: '/api/me/', kind: 'bearer', mode: 'cycle', lines: async () => await peerTokens('access', USERS) }
    }
  ])
}

/**
 * Waits until no stack is still working off a run that just ended (requests
 * queued in a server or behind Nginx keep running after wrk closes its
 * connections), so that work is not counted against the next run. At most 30 s.
 * @param {Record<string, number[]>} trees @param {(line: string) => void} log
 */
async function settle (trees, log) {
  if (!await waitIdle(trees, { idle: IDLE_CORES, intervalMs: 500, timeoutMs: 30_000 })) log('a stack was still busy 30 s after the last run ended; measuring anyway')
}
/** A stack using less than this is idle (Postgres and timers tick a little). */
const IDLE_CORES = 0.1

const mean = (/** @type {number[]} */ xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
const round2 = (/** @type {number} */ n) => Math.round(n * 100) / 100

/**
 * @param {{ root: string, out: string, quick: boolean, peerDir: string, peerRunDir: string, databaseUrl: string | undefined, log: (line: string) => void }} options
 */
export async function comparePeer ({ root, out, quick, peerDir, peerRunDir, databaseUrl, log }) {
  // The cores Tessera's `auto` counts (under a CPU quota, the quota rounded up), as bench/run.mjs takes them.
  const { cores } = loadConfig({})
  const settings = quick
    ? { duration: 2, warmup: 1, rounds: 2, physicalSeconds: 0.5 }
    : { duration: 10, warmup: 1, rounds: 2, physicalSeconds: 3 }
  const loadBefore = loadAverage()
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-bench-peer-'))
  /** @type {import('./peer-stack.mjs').PeerStack | undefined} */
  let peer
  /** @type {import('./tessera.mjs').TesseraProcess | undefined} */
  let tessera
  /** @type {import('./fixtures.mjs').Fixtures | undefined} */
  let fixtures
  /** @type {import('./database.mjs').BenchDatabase | undefined} */
  let database
  try {
    peer = await startPeer(peerDir, peerRunDir, log)
    database = await freshDatabase({ root, databaseUrl, log })
    const kek = randomBytes(32)
    const tesseraEnv = {
      DATABASE_URL: database.url,
      TESSERA_KEK: kek.toString('base64url'),
      TESSERA_DATA_DIR: path.join(root, '.data', 'bench-peer', 'tessera'),
      // The bench's one change to the defaults: every request comes from 127.0.0.1.
      TESSERA_RATE_LIMIT: '1000000'
    }
    tessera = await startTessera(tesseraEnv, { logFile: path.join(root, '.data', 'bench-peer', `tessera-${Date.now()}.log`) })
    log(`Tessera is ready at ${tessera.url}; the SimpleJWT stack at ${peer.url} (${peer.mode})`)
    const fx = fixtures = await prepareFixtures({ url: database.url, kek, tokens: TESSERA_TOKENS, users: USERS })
    const pgPid = listenerPid(Number(new URL(database.url).port))
    const tesseraPids = [tessera.pid, ...(pgPid === undefined ? [] : [pgPid])]
    const trees = { tessera: tesseraPids, peer: peer.pids() }

    log('physical limits…')
    const physical = {
      signAllCores: await signingAllCores(2048, cores, settings.physicalSeconds),
      signOpenssl: await opensslSigning(2048, cores, settings.physicalSeconds),
      argon2AllCores: await argon2AllCores(cores, settings.physicalSeconds)
    }
    const refreshLimit = Math.round(physical.signAllCores / 2)
    log(`physical limits: ${physical.signAllCores} signatures/s on ${cores} cores (refresh ≤ ${refreshLimit}/s), openssl ${physical.signOpenssl ?? 'not installed'}, argon2 ${physical.argon2AllCores}/s`)

    const stackUrl = { tessera: tessera.url, peer: peer.url }
    /** @type {Record<Stack, number>} the fastest refresh seen per stack, to size the next pool */
    const refreshSeen = { tessera: 0, peer: 0 }
    const runs = []
    for (let round = 1; round <= settings.rounds; round++) {
      for (const scenario of scenarios(fx, peer, tmp)) {
        /** @type {Stack[]} */
        const order = round % 2 === 1 ? ['tessera', 'peer'] : ['peer', 'tessera']
        for (const stack of order) {
          const load = scenario[stack]
          // A refresh pool covers what signing alone allows (no stack refreshes faster), or twice what this stack did before.
          const perSecond = refreshSeen[stack] > 0 ? Math.min(refreshLimit, 2 * refreshSeen[stack]) : refreshLimit
          const size = (/** @type {number} */ seconds) => Math.ceil(perSecond * seconds * 1.25) + 2 * scenario.connections
          const label = `${scenario.name} c${scenario.connections} ${STACK_NAMES[stack]} (round ${round})`
          log(`${label}: preparing`)
          const write = async (/** @type {string} */ name, /** @type {string[]} */ lines) => {
            const file = path.join(tmp, `${stack}-${scenario.name}-${name}.txt`)
            await fs.writeFile(file, `${lines.join('\n')}\n`)
            return file
          }
          const lines = await load.lines(scenario.singleUse ? size(settings.warmup) + size(settings.duration) : USERS)
          const warmupLines = scenario.singleUse ? lines.splice(0, size(settings.warmup)) : lines
          /** @param {string} pool @param {number} seconds */
          const options = (pool, seconds) => ({ url: stackUrl[stack], method: load.method, path: load.path, kind: load.kind, mode: load.mode, pool, connections: scenario.connections, seconds })
          const pool = await write('measured', lines)
          await settle(trees, log)
          await runWrk(options(await write('warmup', warmupLines), settings.warmup))
          await settle(trees, log)
          // Tessera's logins past its hashing queue: the wait in the queue is the instance's own histogram, as `make bench` judges it.
          const queueWaits = stack === 'tessera' && scenario.connections === 64 && scenario.name === 'login' ? await scrapeQueueWaits(stackUrl.tessera) : undefined
          const before = cpuSnapshot()
          const measured = await runWrk(options(pool, settings.duration))
          const cpu = coresBetween(before, cpuSnapshot(), trees)
          const result = queueWaits === undefined ? measured : { ...measured, queueWaitMs: longestWaitMs(queueWaits, await scrapeQueueWaits(stackUrl.tessera)) }
          if (scenario.singleUse) refreshSeen[stack] = Math.max(refreshSeen[stack], result.rps)
          log(`${label}: ${result.okRps} ok/s (${result.rps} answers/s), p99 ${result.p99} ms, ${result.errors} errors${result.exhausted ? ', POOL EXHAUSTED' : ''}; CPU ${cpu.trees[stack]} cores (machine ${cpu.machine})`)
          runs.push({ round, scenario: scenario.name, connections: scenario.connections, stack, ...result, cpu })
        }
      }
    }

    const report = {
      generatedAt: new Date().toISOString(),
      machine: machineFacts({ postgres: database.version, loadBefore, cores }),
      settings: {
        ...settings,
        quick,
        wrk: wrkCommand(settings.duration),
        wrkTimeoutSeconds: WRK_TIMEOUT,
        tessera: { start: 'node services/auth/dist/server.js (as make run)', database: database.source, env: { TESSERA_DATA_DIR: path.relative(root, tesseraEnv.TESSERA_DATA_DIR), TESSERA_RATE_LIMIT: tesseraEnv.TESSERA_RATE_LIMIT } },
        peer: { dir: peerDir, mode: peer.mode, env: PEER_SETTINGS, startedByThisRun: peer.started }
      },
      physical: { ...physical, refreshSigningLimit: refreshLimit },
      runs,
      scenarios: summarize(runs, scenarios(fx, peer, tmp))
    }
    await fs.mkdir(out, { recursive: true })
    await fs.writeFile(path.join(out, 'report-peer.json'), `${JSON.stringify(report, null, 2)}\n`)
    await fs.writeFile(path.join(out, 'REPORT-peer.md'), peerMarkdown(report))
    return report
  } finally {
    await fixtures?.close()
    await tessera?.stop()
    await database?.close()
    await peer?.stop()
    await fs.rm(tmp, { recursive: true, force: true })
  }
}

/**
 * Per scenario: each stack's mean over the rounds, the worst p99, the errors
 * and its CPU, and Tessera's 2xx/s over the peer's against the target.
 * @param {any[]} runs @param {PeerScenario[]} list
 */
export function summarize (runs, list) {
  return list.map((scenario) => {
    const of = (/** @type {Stack} */ stack) => {
      const mine = runs.filter((r) => r.scenario === scenario.name && r.connections === scenario.connections && r.stack === stack)
      return {
        okRps: Math.round(mean(mine.map((r) => r.okRps))),
        rps: Math.round(mean(mine.map((r) => r.rps))),
        p99: Math.max(...mine.map((r) => r.p99)),
        max: Math.max(...mine.map((r) => r.max ?? 0)),
        shed: mine.reduce((sum, r) => sum + (r.statuses['503'] ?? 0), 0),
        errors: mine.reduce((sum, r) => sum + r.errors, 0),
        cores: round2(mean(mine.map((r) => r.cpu.trees[stack]))),
        exhausted: mine.some((r) => r.exhausted),
        ...(mine.some((r) => r.queueWaitMs !== undefined) ? { queueWaitMs: Math.max(...mine.map((r) => r.queueWaitMs ?? 0)) } : {})
      }
    }
    const tessera = of('tessera')
    const peer = of('peer')
    const ratio = peer.okRps > 0 ? round2(tessera.okRps / peer.okRps) : 0
    return { name: scenario.name, connections: scenario.connections, tessera, peer, ratio, target: scenario.target, met: ratio >= scenario.target }
  })
}

/** Issue 12's absolute targets that the side-by-side can judge. */
const PEER_TARGETS = { refreshRps: 1500, refreshP99Ms: 100, meTimesPeer: 3, loginWaitMs: 500 }

/**
 * Issue 12's targets, met or not, from the summary: refresh ≥ 1,500/s at 64
 * connections (p99 ≤ 100 ms, zero errors), /v1/me ≥ 3× the peer's /api/me/,
 * and login at 64 connections: nothing waits in Tessera's hashing queue
 * longer than half a second (the longest wait its own histogram counted in
 * any round, as `make bench` judges it), the rest shed with 503; the p99 over
 * every answer (wrk's, shed ones included) is shown beside, for reading.
 * @param {ReturnType<typeof summarize>} scenarios
 * @returns {{ text: string, measured: string, met: boolean }[]}
 */
export function peerTargets (scenarios) {
  const find = (/** @type {string} */ name, /** @type {number} */ connections) => scenarios.find((x) => x.name === name && x.connections === connections)
  const refresh = find('refresh', 64)
  const me = find('me', 64)
  const login = find('login', 64)
  const t = PEER_TARGETS
  return [
    ...(refresh === undefined
      ? []
      : [{
          text: `refresh ≥ ${int(t.refreshRps)}/s at 64 connections, p99 ≤ ${t.refreshP99Ms} ms, zero errors`,
          measured: `${int(refresh.tessera.okRps)} 2xx/s, p99 ${refresh.tessera.p99} ms, ${refresh.tessera.errors} errors`,
          met: refresh.tessera.okRps >= t.refreshRps && refresh.tessera.p99 <= t.refreshP99Ms && refresh.tessera.errors === 0
        }]),
    ...(me === undefined
      ? []
      : [{
          text: `GET /v1/me ≥ ${t.meTimesPeer}× the SimpleJWT stack's /api/me/`,
          measured: `${int(me.tessera.okRps)} against ${int(me.peer.okRps)} 2xx/s = ×${me.ratio}`,
          met: me.ratio >= t.meTimesPeer
        }]),
    ...(login === undefined
      ? []
      : [{
          text: `login at 64 connections: nothing waits in the hashing queue longer than about ${t.loginWaitMs / 1000} s (${t.loginWaitMs} ms), the rest shed with 503`,
          measured: `the longest wait in the hashing queue ≤ ${login.tessera.queueWaitMs ?? '(not scraped)'} ms (its histogram's bucket, every round); ${int(login.tessera.okRps)} 2xx/s; ${int(login.tessera.shed)} answers 503; p99 over every answer ${login.tessera.p99} ms (longest ${login.tessera.max} ms), for reading`,
          met: login.tessera.queueWaitMs !== undefined && login.tessera.queueWaitMs <= t.loginWaitMs
        }])
  ]
}

const int = (/** @type {number} */ n) => Math.round(n).toLocaleString('en-US')
const WHAT = {
  login: 'password login: Tessera POST /oauth/token grant_type=password, the peer POST /api/token/; a random one of 1,000 users, the same sequence for both, argon2id at the same parameters',
  refresh: 'refresh: Tessera POST /oauth/token grant_type=refresh_token, the peer POST /api/token/refresh/; every request presents a different unused token (Tessera\'s minted with its own code and keyring, the peer\'s with its `manage.py mint_tokens`, as their logins issue them)',
  me: 'GET /v1/me against the peer\'s GET /api/me/: a valid access token (one of 1,000, minted right before the run), the user row read on both'
}

/** @param {any} report */
export function peerMarkdown (report) {
  const m = report.machine
  const s = report.settings
  const p = report.physical
  const table = (/** @type {string[]} */ head, /** @type {string[][]} */ rows) => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
  const refresh = report.scenarios.find((/** @type {any} */ x) => x.name === 'refresh')
  const login = report.scenarios.find((/** @type {any} */ x) => x.name === 'login' && x.connections === 16)
  return [
    '# Tessera against the SimpleJWT stack',
    '',
    `Generated by \`make bench-peer\` (\`node bench/run.mjs --peer${s.quick ? ' --quick' : ''}\`) at ${report.generatedAt}. Both stacks ran on this machine in this one run, loaded by the same wrk command, alternating in every scenario (Tessera first in odd rounds, the peer first in even ones), ${s.rounds} rounds of ${s.duration} s measured after ${s.warmup} s of warm-up. Load average before: ${m.loadBefore.join(', ')}; after: ${m.loadAfter.join(', ')}.${s.quick ? ' **A --quick run: 2-second measurements that prove the comparison works, not numbers to quote.**' : ''}`,
    '',
    '## Side by side (mean of the rounds)',
    '',
    table(['scenario', 'connections', 'SimpleJWT 2xx/s', 'Tessera 2xx/s', 'Tessera / SimpleJWT', 'target', '', 'p99 SimpleJWT', 'p99 Tessera', 'errors SimpleJWT / Tessera', 'CPU cores SimpleJWT / Tessera'],
      report.scenarios.map((/** @type {any} */ x) => [
        x.name, String(x.connections), int(x.peer.okRps), int(x.tessera.okRps), `×${x.ratio}`, `≥ ×${x.target}`, x.met ? 'met' : 'NOT met',
        `${x.peer.p99} ms`, `${x.tessera.p99} ms`, `${x.peer.errors} / ${x.tessera.errors}`, `${x.peer.cores} / ${x.tessera.cores}`
      ])),
    '',
    ...['login', 'refresh', 'me'].map((name) => `- **${name}**: ${/** @type {Record<string, string>} */ (WHAT)[name]}.`),
    '- The ratio compares 2xx answers per second, so a stack that sheds or fails requests gets no credit for them; p99 is the worst round\'s; CPU is what each stack\'s processes (servers, workers, Postgres with its backends, and the peer\'s Nginx) used, from /proc, in cores.',
    '',
    '## Targets (issue 12)',
    '',
    table(['target', 'Tessera, this run', ''], peerTargets(report.scenarios).map((x) => [x.text, x.measured, x.met ? 'met' : 'NOT met'])),
    '',
    '## Physical limits of this machine (measured in this run)',
    '',
    table(['limit', 'per second', 'what'], [
      ['RS256 signatures, every core', int(p.signAllCores), `node:crypto.sign, one worker thread per core (${m.cores})`],
      ['refresh, signing alone', int(p.refreshSigningLimit), 'the line above ÷ 2: a refresh signs two tokens on both stacks'],
      ['RS256 signatures, openssl', p.signOpenssl === undefined || p.signOpenssl === null ? 'openssl not installed' : int(p.signOpenssl), `\`openssl speed -multi ${m.cores} rsa2048\`, for reference`],
      ['argon2id verifies, every core', int(p.argon2AllCores), "Tessera's parameters (19 MiB, t=2, p=1; the peer's are the same), one per core"]
    ]),
    '',
    refresh ? `Refresh reached ${Math.round((refresh.tessera.okRps / p.refreshSigningLimit) * 100)} % of the signing limit on Tessera and ${Math.round((refresh.peer.okRps / p.refreshSigningLimit) * 100)} % on the SimpleJWT stack.` : '',
    login ? `Login at 16 connections reached ${Math.round((login.tessera.okRps / p.argon2AllCores) * 100)} % of the argon2 limit on Tessera and ${Math.round((login.peer.okRps / p.argon2AllCores) * 100)} % on the SimpleJWT stack.` : '',
    '',
    '## Every run',
    '',
    table(['round', 'scenario', 'c', 'stack', '2xx/s', 'answers/s', 'p50', 'p99', 'errors', 'answers', 'CPU stack', 'CPU other stack', 'machine busy', 'rest (wrk, others)', 'seconds'],
      report.runs.map((/** @type {any} */ r) => {
        const other = r.stack === 'tessera' ? 'peer' : 'tessera'
        return [String(r.round), r.scenario, String(r.connections), STACK_NAMES[/** @type {Stack} */ (r.stack)], int(r.okRps), int(r.rps), `${r.p50} ms`, `${r.p99} ms`, String(r.errors),
          Object.entries(r.statuses).map(([k, v]) => `${k}×${v}`).join(', ') || 'none', String(r.cpu.trees[r.stack]), String(r.cpu.trees[other]), String(r.cpu.machine), String(r.cpu.rest),
          `${r.seconds}${r.exhausted ? ' (pool ran out)' : ''}`]
      })),
    '',
    '## Machine and settings',
    '',
    `- ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, ${m.platform}, Node ${m.node}; Tessera's Postgres ${m.postgres} (${s.tessera.database})`,
    `- Load generator, the same for both: \`${s.wrk}\` with bench/wrk/pool.lua (each request the next line of a pool: a JSON body or a bearer token; single-use refresh tokens sent once)`,
    `- Tessera: ${s.tessera.start}, default settings except ${Object.entries(s.tessera.env).map(([k, v]) => `${k}=${v}`).join(', ')} (a random TESSERA_KEK; a fresh database)`,
    `- SimpleJWT stack: ${s.peer.dir}, ${s.peer.mode} (${Object.entries(s.peer.env).map(([k, v]) => `${k}=${v}`).join(' ')}), behind its Nginx, its own Postgres 15; started by this run: ${s.peer.startedByThisRun.join(', ') || 'nothing (it was running)'}`,
    ''
  ].join('\n')
}

/** The table printed at the end of a run, and the targets. @param {any} report */
export function peerSummary (report) {
  const targets = peerTargets(report.scenarios).map((x) => `${x.met ? 'met    ' : 'NOT met'}  ${x.text}: ${x.measured}`)
  return [textTable(['scenario', 'c', 'SimpleJWT 2xx/s', 'Tessera 2xx/s', 'ratio', 'target', '', 'p99 S / T', 'CPU S / T'],
    report.scenarios.map((/** @type {any} */ x) => [x.name, String(x.connections), int(x.peer.okRps), int(x.tessera.okRps), `×${x.ratio}`, `≥ ×${x.target}`, x.met ? 'met' : 'NOT met',
      `${x.peer.p99} / ${x.tessera.p99} ms`, `${x.peer.cores} / ${x.tessera.cores}`])), '', ...targets].join('\n')
}

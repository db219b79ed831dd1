/**
 * The report: report.json (everything), REPORT.md (tables, targets, the
 * reference stack, the profile) and report.svg (each scenario against its
 * ceiling), plus the table printed at the end of a run.
 * @module
 */
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { targetText } from './rounds.mjs'

/**
 * Issue 12's targets and issue 14's client_credentials, each judged on the
 * scenarios it names (each against its own target, scenarios.mjs) in this
 * one run; `beside` names the ceilings a target is shown with, for reading.
 */
const TARGETS = [
  { text: 'refresh ≥ 1,500/s at 64 connections, p99 ≤ 100 ms, zero errors', source: 'issue 12', scenarios: ['refresh'], beside: ['refresh-combined', 'refresh-signing-limit'] },
  { text: '/v1/me ≥ 60 % of a bare Fastify route doing the same read', source: 'issue 12', scenarios: ['me'] },
  { text: 'JWKS ≥ 80 % of the bare route (200 and 304)', source: 'issue 12', scenarios: ['jwks', 'jwks-304'] },
  // login-combined is also set against argon2: the most a login reaches when its grant costs what it costs alone (docs/performance.md, "At 16 connections: the target is at the machine's edge").
  { text: 'login ≥ 90 % of the argon2 ceiling at 16 connections, zero errors', source: 'issue 12', scenarios: ['login'], beside: ['login-combined'], bound: 'login-combined' },
  { text: 'login at 64 connections: nothing waits in the hashing queue longer than about half a second (500 ms), past the bound shed at once (p99 of the 503 answers ≤ 100 ms) with 503 + Retry-After', source: 'issue 12', scenarios: ['login-c64'] },
  { text: 'client_credentials ≥ 60 % of one signature + one indexed read + one request', source: 'issue 14', scenarios: ['client-credentials'] }
]

/**
 * @typedef {{ ceiling: string, rate: number, low: number, ratio: number }} BesideRatio a ceiling read beside the judged one, measured in rounds alternating with the scenario's
 * @typedef {{ name: string, rps: number, low?: number, p99: number, ceiling: string, ceilingRate: number, ratio: number, beside?: BesideRatio[], target: import('./scenarios.mjs').Target, issue9Ratio?: number, errors: number, met: boolean, shed?: number, shedByRetryAfter?: Record<string, number>, queueWaitMs?: number, shedP99?: number }} JudgedResult
 * @typedef {{ text: string, measured: string, met: boolean }} TargetLine
 */

const rate = (/** @type {number} */ n) => `${Math.round(n).toLocaleString('en-US')}/s`

/** @param {JudgedResult} r @param {Record<string, { rate: number }>} ceilings @param {string[]} beside @param {string} [bound] */
function measuredText (r, ceilings, beside, bound) {
  const ofCeiling = `${Math.round(r.ratio * 100)} % of ${r.ceiling} ${rate(r.ceilingRate)}`
  // The scenario's own ceilings read beside (measured in rounds with it), then the target's.
  const shares = [
    ...(r.beside ?? []).map((b) => `${Math.round(b.ratio * 100)} % of ${b.ceiling} ${rate(b.rate)}`),
    ...beside.filter((name) => ceilings[name] !== undefined && name !== r.ceiling)
      .map((name) => `${Math.round((r.rps / (ceilings[name]?.rate ?? 1)) * 100)} % of ${name} ${rate(ceilings[name]?.rate ?? 0)}`)
  ]
  const boundRate = bound === undefined ? undefined : ceilings[bound]?.rate
  if (boundRate !== undefined) shares.push(`${bound} itself ${Math.round((boundRate / r.ceilingRate) * 100)} % of ${r.ceiling}: the most a ${r.name} reaches with the rest of its work costing what it costs alone`)
  if (r.target.ratio !== undefined) return `${r.name}: ${rate(r.rps)} = ${ofCeiling}, ${r.errors} errors${shares.length === 0 ? '' : ` (for reading: ${shares.join('; ')})`}`
  const shed = r.shed === undefined ? '' : `, ${r.shed.toLocaleString('en-US')} answers 503 with Retry-After (${Object.entries(r.shedByRetryAfter ?? {}).map(([after, n]) => `${after} s ×${n.toLocaleString('en-US')}`).join(', ') || 'none'})`
  const waits = r.queueWaitMs === undefined ? '' : `, the longest wait in the hashing queue ≤ ${r.queueWaitMs} ms (its histogram's bucket, every round), p99 of the 503 answers ${r.shedP99 ?? '–'} ms (worst round)`
  return `${r.name}: ${rate(r.rps)}, p99 ${r.p99} ms, ${r.errors} errors${shed}${waits} (${[ofCeiling, ...shares].join('; ')})`
}

/**
 * Each target whose scenarios ran, met or not; then issue 9's ratios where a
 * scenario still has one (for reading), and zero errors everywhere.
 * @param {JudgedResult[]} results @param {Record<string, { rate: number }>} [ceilings]
 * @returns {{ targets: TargetLine[], issue9: TargetLine[] }}
 */
export function judgeTargets (results, ceilings = {}) {
  if (results.length === 0) return { targets: [], issue9: [] }
  const targets = TARGETS.flatMap(({ text, source, scenarios, beside = [], bound }) => {
    const rows = results.filter((r) => scenarios.includes(r.name))
    if (rows.length === 0) return []
    return [{ text: `${text} (${source})`, measured: rows.map((r) => measuredText(r, ceilings, beside, bound)).join('; '), met: rows.every((r) => r.met) }]
  })
  const issue9 = [
    ...results.filter((r) => r.issue9Ratio !== undefined).map((r) => ({
      text: `${r.name} ≥ ${Math.round((r.issue9Ratio ?? 0) * 100)} % of ${r.ceiling}`,
      measured: `${rate(r.rps)} of ${rate(r.ceilingRate)} = ${Math.round(r.ratio * 100)} %`,
      met: r.ratio >= (r.issue9Ratio ?? 0)
    })),
    { text: 'zero errors in every scenario', measured: results.map((r) => `${r.name}: ${r.errors}`).join(', '), met: results.every((r) => r.errors === 0) }
  ]
  return { targets, issue9 }
}

/** The 1, 5 and 15-minute load averages, rounded. */
export const loadAverage = () => os.loadavg().map((l) => Math.round(l * 100) / 100)

/**
 * What a report says about the machine it was measured on; `cores` is the count Tessera's `auto` runs its instance with
 * (loadConfig({}).cores: a CPU quota rounded up), what the run had to share, not every core of the host.
 * @param {{ postgres: string, loadBefore: number[], cores: number }} run
 */
export function machineFacts ({ postgres, loadBefore, cores }) {
  return {
    cores,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()}`,
    node: process.versions.node,
    postgres,
    loadBefore,
    loadAfter: loadAverage()
  }
}

const int = (/** @type {number} */ n) => Math.round(n).toLocaleString('en-US')
const percent = (/** @type {number | undefined} */ r) => r === undefined ? '–' : `${Math.round(r * 100)} %`
const ms = (/** @type {number} */ n) => `${n} ms`
/** A ceiling's worst–best, and its rounds. @param {{ rate: number, low: number, rounds: number[] }} c */
const spread = (c) => {
  if (c.low === c.rate) return c.rounds.length > 1 ? `${int(c.rate)} (${c.rounds.length} rounds)` : '–'
  const what = c.rounds.length > 1 ? `rounds ${c.rounds.map(int).join(', ')}` : 'combined'
  return `${int(c.low)}–${int(c.rate)} (${percent(c.low / c.rate)} of best; ${what})`
}

/** A best rate and its worst round. @param {number} best @param {number | undefined} low */
const range = (best, low) => (low === undefined || low === best ? int(best) : `${int(low)}–${int(best)}`)

/** @param {any} report */
function scenarioRows (report) {
  return report.scenarios.map((/** @type {any} */ s) => [
    s.name, int(s.rps), range(s.rps, s.low), ms(s.p50), ms(s.p99), String(s.errors), `${int(s.ceilingRate)} (${s.ceiling})`, range(s.ceilingRate, s.ceilingLow), percent(s.ratio), besideText(s.beside), targetText(s.target), s.met ? 'met' : 'NOT met'
  ])
}

/**
 * Each measured ceiling's rounds beside what the machine did meanwhile, as
 * the scenarios' rounds are shown, so a slow ceiling round says itself why.
 * @param {Record<string, { rounds: number[], cpu?: (import('./proc-cpu.mjs').RunCpu | undefined)[] }>} ceilings
 */
function ceilingCpuLines (ceilings) {
  const withCpu = Object.entries(ceilings).filter(([, c]) => c.cpu !== undefined)
  if (withCpu.length === 0) return []
  return [
    'Beside each round of a measured ceiling, the cores each part of the machine used during it, as for the scenarios. A bare route names its server (`bare`); a ceiling measured in the harness\'s own process names that process with what it started for the measurement (`harness`: pgbench, the argon2 child), and its CPU per answer is the CPU one signature, verify, hash or transaction took there:', '',
    ...withCpu.map(([name, c]) => `- **${name}**: ${c.rounds.map((rps, i) => `${int(rps)}/s${roundCpuText({ rps, cpu: c.cpu?.[i] })}`).join(', ')}.`),
    ''
  ]
}

/** The ratios to the ceilings read beside the judged one. @param {BesideRatio[] | undefined} beside */
const besideText = (beside) => beside === undefined ? '–' : beside.map((b) => `${percent(b.ratio)} of ${int(b.rate)} (${b.ceiling})`).join(', ')

const SCENARIO_HEAD = ['scenario', 'req/s', 'rounds', 'p50', 'p99', 'errors', 'ceiling /s', 'ceiling rounds', 'ratio', 'read beside', 'target', '']

/** @param {string[]} head @param {string[][]} rows */
function markdownTable (head, rows) {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

/** @param {string[]} head @param {string[][]} rows */
export function textTable (head, rows) {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (/** @type {string[]} */ cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

/** The table printed at the end of a run. @param {any} report */
export function consoleSummary (report) {
  const parts = [textTable(SCENARIO_HEAD, scenarioRows(report))]
  if (report.scaling.length > 0) {
    parts.push('', textTable(['scaling', ...report.scaling[0].runs.map((/** @type {any} */ r) => `${r.processes} worker${r.processes === 1 ? '' : 's'} req/s`), 'factor'],
      report.scaling.map((/** @type {any} */ s) => [s.name, ...s.runs.map((/** @type {any} */ r) => int(r.rps)), `×${s.factor}`])))
  }
  for (const s of report.skipped) parts.push(`${s.name}: not run (${s.reason})`)
  parts.push('', ...report.targets.targets.map((/** @type {TargetLine} */ t) => `${t.met ? 'met    ' : 'NOT met'}  ${t.text}: ${t.measured}`))
  return parts.join('\n')
}

/** Each scenario's req/s as a bar inside its ceiling's, with the target marked. @param {any} report */
function chartSvg (report) {
  const rows = report.scenarios
  const left = 150
  const width = 460
  const rowHeight = 34
  const top = 40
  const height = top + rows.length * rowHeight + 30
  const esc = (/** @type {string} */ s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const bars = rows.map((/** @type {any} */ s, /** @type {number} */ i) => {
    const y = top + i * rowHeight
    const w = Math.max(1, Math.min(1.25, s.ratio) * width)
    // An absolute rate is marked where it falls against the ceiling; a latency bound has no mark.
    const mark = s.target.ratio ?? (s.target.rps === undefined ? undefined : Math.min(1.25, s.target.rps / s.ceilingRate))
    const colour = s.met ? '#2e7d32' : '#c62828'
    return [
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(s.name)}</text>`,
      `<rect x="${left}" y="${y + 2}" width="${width}" height="18" fill="#e0e0e0"/>`,
      `<rect x="${left}" y="${y + 2}" width="${w.toFixed(1)}" height="18" fill="${colour}"/>`,
      ...(mark === undefined ? [] : [`<line x1="${(left + mark * width).toFixed(1)}" y1="${y - 1}" x2="${(left + mark * width).toFixed(1)}" y2="${y + 23}" stroke="#000" stroke-width="2"/>`]),
      `<text x="${left + width + 8}" y="${y + 15}">${int(s.rps)} / ${int(s.ceilingRate)} req/s (${percent(s.ratio)})</text>`
    ].join('\n  ')
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 230}" height="${height}" font-family="sans-serif" font-size="12">
  <rect width="100%" height="100%" fill="#fff"/>
  <text x="10" y="20" font-size="14" font-weight="bold">Tessera req/s against this machine's ceilings (grey = ceiling, black tick = target)</text>
  ${bars.join('\n  ')}
  <text x="10" y="${height - 8}" fill="#555">${esc(`${report.machine.cores} cores, ${report.machine.cpu}, Node ${report.machine.node}, Postgres ${report.machine.postgres}; ${report.generatedAt}`)}</text>
</svg>
`
}

/**
 * What the machine gave a round, beside its rate: the cores each measured
 * process tree used and its CPU time per successful answer, the load
 * generator's cores and everyone else's (a round that got less of the
 * machine is slower for it, not Tessera). A tree that used less than would
 * print as 0.01 cores is left out: an idle Postgres's checkpointer is not part
 * of a round that never reads it.
 * @param {{ rps: number, cpu?: import('./proc-cpu.mjs').RunCpu }} round
 */
export function roundCpuText ({ rps, cpu }) {
  if (cpu === undefined) return ''
  const busy = Object.entries(cpu.trees).filter(([, cores]) => cores >= 0.005)
  const perAnswer = rps > 0 ? busy.map(([name, cores]) => `${name} ${((cores * 1000) / rps).toFixed(2)}`) : []
  const generator = cpu.loadGenerator === undefined ? [] : [`load generator ${cpu.loadGenerator.toFixed(2)}`]
  return ` (cores: ${[...busy.map(([name, cores]) => `${name} ${cores.toFixed(2)}`), ...generator, `others ${cpu.others.toFixed(2)}`].join(', ')}${perAnswer.length > 0 ? `; ms of CPU per answer: ${perAnswer.join(', ')}` : ''})`
}

/** @param {any} report */
export function markdown (report) {
  const m = report.machine
  const s = report.settings
  const lines = [
    '# Tessera benchmark report',
    '',
    `Generated by \`make bench\` (bench/run.mjs) at ${report.generatedAt}. Every number below was measured in this one run, on this machine; ratios compare each scenario with a ceiling measured alongside it. Load average before the run: ${m.loadBefore.join(', ')} (1, 5, 15 min); after: ${m.loadAfter.join(', ')}.${m.loadBefore[0] > m.cores * 0.5 ? ' **The machine was busy with other work while this ran, so absolute numbers are low and noisy; the ratios are the part to read.**' : ''}`,
    '',
    '![each scenario against its ceiling](report.svg)',
    '',
    '## Scenarios (one Tessera instance)',
    '',
    `Each scenario ran ${s.rounds ?? 1} round${(s.rounds ?? 1) === 1 ? '' : 's'}, each just after a round of its ceiling (of every part of a combined one, and of the ceiling in \`read beside\`), so they alternate; the best round of each is kept (other work on the machine only ever slows a round down), and \`rounds\` and \`ceiling rounds\` give the worst–best of each. Errors are summed over every round. A target is met when every bound holds with zero errors. The JWKS and /v1/me are judged against the bare route served as Tessera serves it (a node:cluster of as many workers as Tessera's instance runs, sharing one port); \`read beside\` gives their ratio to the same route served by one process, the ceiling before session 7, and for the JWKS to the same answers made by a node:http listener before Fastify routes them (\`-node\`), as Tessera answers its own since session 40. Beside each round, the cores each part of the machine used during it (Tessera's processes, its hashing process apart, its Postgres, the load generator, and others: other users' work and the kernel's) and Tessera's, the hashing process's and Postgres's CPU per answer: a round that got less of the machine is slower for that, not because Tessera's work grew.`,
    '',
    markdownTable(SCENARIO_HEAD, scenarioRows(report)),
    '',
    ...report.scenarios.map((/** @type {any} */ x) => `- **${x.name}**: ${x.what}. Best round: ${x.requests.toLocaleString('en-US')} requests in ${x.seconds} s${x.p99All === undefined ? '' : ` (p99 of every answer, shed ones included: ${x.p99All} ms)`}; rounds ${(x.rounds ?? []).map((/** @type {any} */ r) => `${int(r.rps)}/s p99 ${r.p99} ms${r.shedP99 === undefined ? '' : ` and 503s p99 ${r.shedP99} ms`}${roundCpuText(r)}`).join(', ')}; answers over all rounds ${Object.entries(x.statuses).map(([k, v]) => `${k}×${v}`).join(', ') || 'none'}.${x.note ? ` ${x.note}` : ''}`),
    ...report.skipped.map((/** @type {any} */ x) => `- **${x.name}**: not run: ${x.reason}.`),
    '',
    '## Targets (issue 12, and issue 14\'s client_credentials)',
    '',
    markdownTable(['target', 'measured (best round)', ''], report.targets.targets.map((/** @type {any} */ t) => [t.text, t.measured, t.met ? 'met' : 'NOT met'])),
    '',
    '### Issue 9\'s ratios, for reading',
    '',
    'Issue 12 replaced these; they still say how close a path comes to what its ceiling allows (refresh\'s absolute target is bounded by signing, see the physical limits).',
    '',
    markdownTable(['ratio', 'measured', ''], report.targets.issue9.map((/** @type {any} */ t) => [t.text, t.measured, t.met ? 'met' : 'NOT met'])),
    '',
    'Where the time goes, what was done about it and what blocks a target not met: [docs/performance.md](../docs/performance.md).',
    '',
    ...(report.physical?.length > 0
      ? ['## Physical limits', '', 'What the hardware allows with nothing else running (bench/lib/physical.mjs), beside the ceilings of the design:', '',
          markdownTable(['scenario', 'req/s', 'physical limit', 'per second', 'share'], report.physical.map((/** @type {any} */ p) => [p.scenario, int(p.rps), p.limit, int(p.rate), percent(p.ratio)])), '']
      : []),
    '## Ceilings',
    '',
    `Each measured ceiling is the best of ${s.ceilingRounds} round${s.ceilingRounds === 1 ? '' : 's'} (other work on the machine only ever slows a round down); the spread is its worst and best round. A combined ceiling is combined round by round (its round i from its parts' rounds i, measured together), then its best kept the same way.`,
    '',
    markdownTable(['ceiling', 'per second', 'spread', 'how it was measured'], Object.entries(report.ceilings).map(([name, c]) => [name, int(/** @type {any} */ (c).rate), spread(/** @type {any} */ (c)), /** @type {any} */ (c).what])),
    '',
    ...ceilingCpuLines(report.ceilings)
  ]
  if (report.scaling.length > 0) {
    lines.push('## Using every core: one HTTP worker against one per core', '',
      `One Tessera instance serves with TESSERA_WORKERS HTTP worker processes (default one per core) that share its port; the scenarios above ran that way. Here the same scenarios run on an instance with TESSERA_WORKERS=1. Autocannon, Postgres and the servers share the same ${m.cores} cores, so the factor is what this machine gives, not what more hardware would.`, '',
      markdownTable(['scenario', ...report.scaling[0].runs.flatMap((/** @type {any} */ r) => [`${r.processes} worker${r.processes === 1 ? '' : 's'} req/s`, 'p99']), 'factor', 'ratio at N'],
        report.scaling.map((/** @type {any} */ x) => [x.name, ...x.runs.flatMap((/** @type {any} */ r) => [int(r.rps), ms(r.p99)]), `×${x.factor}`, percent(x.ratioAtN)])),
      '')
  }
  // Not issue 9's numbers for it (another host, another load generator): make bench-peer measures it in one run with Tessera.
  lines.push('## Against the stack Tessera replaces', '',
    'Django REST framework + SimpleJWT is measured side by side with Tessera, on this machine, in one run and with one load generator, by `make bench-peer`: [REPORT-peer.md](REPORT-peer.md).', '')
  if (report.profile !== undefined) lines.push(...profileSection(report.profile))
  lines.push('## Machine and settings', '',
    `- ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, ${m.platform}, Node ${m.node}`,
    `- Postgres ${m.postgres} (${report.database.source}), ${Object.entries(report.database.settings).map(([k, v]) => `${k}=${v}`).join(', ')}`,
    `- autocannon: ${s.connections} connections (login ${s.loginConnections}), pipelining 1, ${s.warmup} s warm-up before a scenario's first round (login ${s.loginWarmup} s), then ${s.duration} s measured per round (login ${s.loginDuration} s); in-process ceilings ${s.ceilingSeconds} s per round, every ceiling the best of ${s.ceilingRounds} round${s.ceilingRounds === 1 ? '' : 's'}`,
    `- Tessera: ${Object.entries(s.tessera).map(([k, v]) => `${k}=${v}`).join(', ')}`,
    `- ${s.users.toLocaleString('en-US')} users sharing one argon2id hash at Tessera's parameters; refresh tokens and access tokens minted with Tessera's own code and keyring (one session each), so every refresh presents an unused token`,
    '')
  return lines.join('\n')
}

/**
 * The CPU profile, and beside it the saved baseline (bench/profiles/before-SCENARIO.json)
 * when there is one: the shares of busy time are what compare across runs.
 * @param {any} p
 */
function profileSection (p) {
  const before = p.baseline
  const name = p.scenario ?? 'refresh'
  const lines = [`## Where ${name} spends its time (CPU profile of the server)`, '',
    `\`node --cpu-prof\` on a Tessera process serving the ${name} scenario again (${int(p.rps)} req/s over ${p.seconds} s measured). Only the ${p.windowSeconds} s around that run count (tokens minted, warm-up, measured run; start-up and shutdown left out): ${int(p.busyMs)} ms on the CPU, idle ${p.idlePercent} % of it. Self time by area, then the top functions; docs/performance.md reads them.`, '']
  if (before === undefined) {
    lines.push(markdownTable(['area', 'self ms', '% of busy'], p.areas.slice(0, 12).map((/** @type {any} */ a) => [a.area, int(a.selfMs), `${a.percent} %`])), '',
      markdownTable(['function', 'where', 'self ms', '% of busy'], p.functions.map((/** @type {any} */ f) => [`\`${f.function}\``, f.location || f.area, int(f.selfMs), `${f.percent} %`])), '')
    return lines
  }
  const share = (/** @type {any[]} */ list, /** @type {(x: any) => string} */ key, /** @type {string} */ wanted) => {
    const found = list.find((x) => key(x) === wanted)
    return found === undefined ? '–' : `${found.percent} %`
  }
  const areas = [...new Set([...p.areas.slice(0, 12), ...before.areas.slice(0, 12)].map((a) => a.area))]
  const fnKey = (/** @type {any} */ f) => `${f.function} ${f.location || f.area}`
  const functions = [...new Map([...p.functions, ...before.functions].map((f) => [fnKey(f), f])).values()]
  lines.push(`Before: ${before.file}, saved at ${before.savedAt} from commit ${before.commit} (${int(before.rps)} req/s, load average ${before.load.join(', ')}; ${int(before.busyMs)} ms on the CPU, idle ${before.idlePercent} %). After: this run. Absolute rates depend on the load; compare the shares.`, '',
    markdownTable(['area', '% of busy, before', '% of busy, after'], areas.map((area) => [area, share(before.areas, (a) => a.area, area), share(p.areas, (a) => a.area, area)])), '',
    markdownTable(['function', 'where', '% of busy, before', '% of busy, after'], functions.map((f) => [`\`${f.function}\``, f.location || f.area, share(before.functions, fnKey, fnKey(f)), share(p.functions, fnKey, fnKey(f))])), '')
  return lines
}

/** @param {string} dir @param {any} report */
export async function writeReport (dir, report) {
  await fs.mkdir(dir, { recursive: true })
  await fs.writeFile(path.join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`)
  await fs.writeFile(path.join(dir, 'REPORT.md'), markdown(report))
  await fs.writeFile(path.join(dir, 'report.svg'), chartSvg(report))
}

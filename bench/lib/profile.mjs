/**
 * Summarizes a V8 .cpuprofile (node --cpu-prof): self time per function and
 * per area (our code, each package, Node internals, GC, idle), so where the
 * time goes can be read without a profiler UI; and saved summaries, the
 * "before" a later run shows beside its own.
 * @module
 */
import { execFileSync } from 'node:child_process'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * @typedef {object} ProfileNode
 * @property {number} id
 * @property {{ functionName: string, url: string, lineNumber: number }} callFrame
 */

/** @param {string} url */
function areaOf (url) {
  if (url === '') return 'native / V8'
  if (url.startsWith('node:')) return 'node internals'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]
  if (url.includes('/services/auth/dist/')) return 'tessera'
  return 'other'
}

/** @param {string} url */
function shortLocation (url, line) {
  const trimmed = url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '').replace(/^.*\/services\/auth\/dist\//, 'tessera/')
  return trimmed === '' ? '' : `${trimmed}:${line + 1}`
}

/** Now on the clock V8 stamps profile samples with (monotonic, microseconds). */
export const profileClock = () => Number(process.hrtime.bigint() / 1000n)

/**
 * @param {string} file a .cpuprofile
 * @param {{ from?: number, to?: number, top?: number }} [options] only samples between from and to (profileClock), so start-up and shutdown are left out
 */
export async function summarizeProfile (file, { from = 0, to = Infinity, top = 15 } = {}) {
  const profile = JSON.parse(await fs.readFile(file, 'utf8'))
  /** @type {Map<number, ProfileNode>} */
  const nodes = new Map(profile.nodes.map((/** @type {ProfileNode} */ n) => [n.id, n]))
  /** @type {Map<number, number>} */
  const selfUs = new Map()
  let at = profile.startTime
  profile.samples.forEach((/** @type {number} */ id, /** @type {number} */ i) => {
    const delta = profile.timeDeltas[i] ?? 0
    at += delta
    if (at >= from && at <= to) selfUs.set(id, (selfUs.get(id) ?? 0) + delta)
  })
  /** @type {Map<string, { fn: string, location: string, area: string, us: number }>} */
  const byFunction = new Map()
  /** @type {Map<string, number>} */
  const byArea = new Map()
  let total = 0
  let idle = 0
  for (const [id, us] of selfUs) {
    const node = nodes.get(id)
    if (node === undefined) continue
    const { functionName, url, lineNumber } = node.callFrame
    total += us
    if (functionName === '(idle)') { idle += us; continue }
    const fn = functionName === '' ? '(anonymous)' : functionName
    const area = functionName.startsWith('(') ? fn : areaOf(url)
    const key = `${fn}\u0000${url}\u0000${lineNumber}`
    const entry = byFunction.get(key) ?? { fn, location: shortLocation(url, lineNumber), area, us: 0 }
    entry.us += us
    byFunction.set(key, entry)
    byArea.set(area, (byArea.get(area) ?? 0) + us)
  }
  const busy = total - idle
  const pct = (/** @type {number} */ us) => Math.round((us / busy) * 1000) / 10
  return {
    totalMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    idlePercent: total === 0 ? 0 : Math.round((idle / total) * 1000) / 10,
    functions: [...byFunction.values()].sort((a, b) => b.us - a.us).slice(0, top)
      .map((f) => ({ function: f.fn, location: f.location, area: f.area, selfMs: Math.round(f.us / 1000), percent: pct(f.us) })),
    areas: [...byArea.entries()].sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, selfMs: Math.round(us / 1000), percent: pct(us) }))
  }
}

/** Where the committed profile summaries live: the "before" of a later "after". */
export const PROFILES_DIR = fileURLToPath(new URL('../profiles/', import.meta.url))

/**
 * @typedef {Awaited<ReturnType<typeof summarizeProfile>> & { scenario: string, rps: number, seconds: number, errors: number }} ProfileSummary
 * @typedef {ProfileSummary & { savedAt: string, commit: string, load: number[] }} SavedProfile
 */

/**
 * Stores a profile's summary (no raw samples) with the commit it was taken
 * at and the load average, so a later run can show it beside its own.
 * @param {string} file @param {ProfileSummary} summary @param {{ root: string, load: number[] }} run
 */
export async function saveProfile (file, summary, { root, load }) {
  const { scenario, rps, seconds, errors, totalMs, busyMs, idlePercent, functions, areas } = summary
  /** @type {SavedProfile} */
  const saved = { scenario, savedAt: new Date().toISOString(), commit: gitCommit(root), load, rps, seconds, errors, totalMs, busyMs, idlePercent, functions, areas }
  await fs.mkdir(path.dirname(file), { recursive: true })
  await fs.writeFile(file, `${JSON.stringify(saved, null, 2)}\n`)
  return file
}

/** A saved profile summary. @param {string} file @returns {Promise<SavedProfile>} */
export async function loadProfile (file) {
  return JSON.parse(await fs.readFile(file, 'utf8'))
}

/** The checked-out commit, with `+changes` when the tree differs from it. @param {string} root */
function gitCommit (root) {
  const git = (/** @type {string[]} */ args) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  try {
    const commit = git(['rev-parse', '--short', 'HEAD'])
    return git(['status', '--porcelain', '--untracked-files=no', '--', 'services', 'migrations']) === '' ? commit : `${commit}+changes`
  } catch {
    return 'unknown'
  }
}

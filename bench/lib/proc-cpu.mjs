/**
 * CPU time from /proc (Linux): what a process tree used (a server, its worker
 * processes, its Postgres and every backend) and what the whole machine was
 * busy with, between two snapshots. A child that exits meanwhile is counted
 * through its parent's cutime/cstime once reaped, so nothing a tree did is lost.
 * @module
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'

const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** @typedef {Map<number, { ppid: number, ticks: number }>} ProcTable */

/** @returns {ProcTable} pid → parent and CPU ticks (own plus reaped children's) */
function procTable () {
  /** @type {ProcTable} */
  const table = new Map()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue
    }
    // Fields after the command name, which may itself hold spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14])
    table.set(Number(entry), { ppid: Number(rest[1]), ticks })
  }
  return table
}

/**
 * The ticks of the trees under `roots`, leaving out the trees under `apart`
 * (other named trees inside them, each counted under its own name).
 * @param {ProcTable} table @param {number[]} roots @param {Set<number>} [apart]
 */
function treeTicks (table, roots, apart = new Set()) {
  /** @type {Map<number, number[]>} */
  const children = new Map()
  for (const [pid, { ppid }] of table) children.set(ppid, [...(children.get(ppid) ?? []), pid])
  const seen = new Set()
  const todo = roots.filter((pid) => table.has(pid))
  let ticks = 0
  while (todo.length > 0) {
    const pid = /** @type {number} */ (todo.pop())
    if (seen.has(pid) || apart.has(pid)) continue
    seen.add(pid)
    ticks += table.get(pid)?.ticks ?? 0
    todo.push(...(children.get(pid) ?? []))
  }
  return ticks
}

function machineBusyTicks () {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/)
  const [user, nice, system, , , irq, softirq, steal] = fields.map(Number)
  return user + nice + system + irq + softirq + steal
}

/**
 * @typedef {object} CpuSnapshot
 * @property {number} at performance.now()
 * @property {number} busy machine busy ticks
 * @property {ProcTable} table
 */

/** @returns {CpuSnapshot} */
export function cpuSnapshot () {
  return { at: performance.now(), busy: machineBusyTicks(), table: procTable() }
}

/**
 * Cores used between two snapshots: by each named process tree, by the whole
 * machine, and by everything else (load generator, harness, other users). A
 * tree inside another (Tessera's hashing process under its primary) is
 * counted under its own name only.
 * @param {CpuSnapshot} before @param {CpuSnapshot} after @param {Record<string, number[]>} trees name → root pids
 * @returns {{ trees: Record<string, number>, machine: number, rest: number }}
 */
export function coresBetween (before, after, trees) {
  const seconds = (after.at - before.at) / 1000
  const cores = (/** @type {number} */ ticks) => Math.round((ticks / TICKS / seconds) * 100) / 100
  /** @type {Record<string, number>} */
  const used = {}
  for (const [name, roots] of Object.entries(trees)) {
    // A root two trees both name (one Postgres serving both stacks) stays in each.
    const apart = new Set(Object.entries(trees).flatMap(([other, pids]) => other === name ? [] : pids.filter((pid) => !roots.includes(pid))))
    used[name] = cores(treeTicks(after.table, roots, apart) - treeTicks(before.table, roots, apart))
  }
  const machine = cores(after.busy - before.busy)
  return { trees: used, machine, rest: Math.round((machine - Object.values(used).reduce((a, b) => a + b, 0)) * 100) / 100 }
}

/**
 * What the machine's cores did during one measured run, in cores: each named
 * process tree (Tessera's instance, its Postgres), this process alone (the
 * load generator: autocannon runs on its main thread), and everything else
 * on the machine (other users' builds and tests, processes too short-lived to
 * be seen, the kernel's own work). A round that got less of the machine says
 * so beside its rate (docs/performance-history.md, "Session 6: refresh through a run").
 * A ceiling measured in the harness's own process (signing, argon2, the
 * rotation through Tessera's code) has no load generator: its `harness` tree
 * is that process with what it started for the measurement (pgbench, the
 * argon2 child), the servers apart.
 * @typedef {object} RunCpu
 * @property {Record<string, number>} trees
 * @property {number} [loadGenerator] absent for a ceiling measured in process
 * @property {number} others
 * @property {number} machine every busy core, from /proc/stat
 */

/** The start of a run whose CPU is wanted. @returns {{ snapshot: CpuSnapshot, own: NodeJS.CpuUsage }} */
export function runCpuStart () {
  return { snapshot: cpuSnapshot(), own: process.cpuUsage() }
}

/**
 * The cores each part of the machine used since `start`.
 * @param {ReturnType<typeof runCpuStart>} start @param {Record<string, number[]>} trees name → root pids
 * @returns {RunCpu}
 */
export function runCpuSince (start, trees) {
  const own = process.cpuUsage(start.own)
  const after = cpuSnapshot()
  const seconds = (after.at - start.snapshot.at) / 1000
  const used = coresBetween(start.snapshot, after, trees)
  const loadGenerator = Math.round(((own.user + own.system) / 1e6 / seconds) * 100) / 100
  return { trees: used.trees, loadGenerator, others: Math.max(0, Math.round((used.rest - loadGenerator) * 100) / 100), machine: used.machine }
}

/**
 * The cores each part of the machine used since `start` while this process
 * measured a ceiling itself: this process and its children as `harness`
 * (the trees in `servers` apart, each counted under its own name), and
 * everyone else.
 * @param {CpuSnapshot} start from cpuSnapshot() @param {Record<string, number[]>} servers name → root pids
 * @returns {RunCpu}
 */
export function harnessCpuSince (start, servers) {
  // coresBetween already sets every other tree's roots apart from this process's tree.
  const used = coresBetween(start, cpuSnapshot(), { harness: [process.pid], ...servers })
  return { trees: used.trees, others: Math.max(0, used.rest), machine: used.machine }
}

/**
 * Waits until every named process tree uses less than `idle` cores over one
 * `intervalMs` sample, at most `timeoutMs`. False when the time ran out.
 * @param {Record<string, number[]>} trees @param {{ idle: number, intervalMs: number, timeoutMs: number }} options
 */
export async function waitIdle (trees, { idle, intervalMs, timeoutMs }) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const before = cpuSnapshot()
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
    if (Object.values(coresBetween(before, cpuSnapshot(), trees).trees).every((cores) => cores < idle)) return true
  }
  return false
}

/**
 * The children of `parents` whose command line holds `part` (Tessera's
 * hashing process under its primary).
 * @param {number[]} parents @param {string} part @returns {number[]}
 */
export function childrenRunning (parents, part) {
  const wanted = new Set(parents)
  const found = []
  for (const [pid, { ppid }] of procTable()) {
    if (!wanted.has(ppid)) continue
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(part)) found.push(pid)
    } catch {}
  }
  return found
}

/**
 * The process listening on a loopback TCP port (the Postgres a database URL
 * names): its socket's inode from /proc/net/tcp, then the process holding it.
 * @param {number} port @returns {number | undefined}
 */
export function listenerPid (port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  const inodes = new Set()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = readFileSync(file, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const cells = line.trim().split(/\s+/)
      // st 0A is LISTEN
      if (cells[1]?.endsWith(`:${hex}`) && cells[3] === '0A') inodes.add(`socket:[${cells[9]}]`)
    }
  }
  if (inodes.size === 0) return undefined
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let fds
    try { fds = readdirSync(`/proc/${entry}/fd`) } catch { continue }
    for (const fd of fds) {
      try {
        if (inodes.has(readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry)
      } catch {}
    }
  }
  return undefined
}

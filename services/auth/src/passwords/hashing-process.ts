/**
 * The instance's hashing process: its one hashing queue (a PasswordHasher),
 * and argon2 (and any stored format's verify, see passwords/verify.ts) on
 * every core, all hashing threads but one at a lowered OS priority
 * (TESSERA_HASH_NICE, added to the instance's), so the HTTP workers' event
 * loops and Postgres take most of the CPU whenever they want it, while one
 * hashing thread at their priority keeps a floor under the login rate
 * (docs/decisions.md, "Hashing priority: nice 10" and "Login under a flood:
 * a queue bounded in time, a hashing thread at full priority"). The main
 * thread keeps the instance's priority too: it admits and refuses, and
 * hands each thread its next hash the moment it frees.
 *
 * Started by the primary (passwords/hashing-engine.ts) with UV_THREADPOOL_SIZE
 * set to the hashing concurrency and its settings (HashingSettings) as the
 * first argument. The HTTP workers ask it directly over a Unix socket
 * (cluster/hashing.ts), and hear from it when the queue fills and drains
 * and what their share of it is; the primary asks it over IPC for its
 * metrics (the queue's), which it merges into the instance's scrape.
 *
 * On Linux a nice value belongs to a thread, and an unprivileged thread can
 * lower its priority but never raise it again: so the libuv pool is started
 * before the first hash, and then every thread is lowered except the main
 * thread and the one pool thread that keep the instance's priority.
 * @module
 */
import { pbkdf2 } from 'node:crypto'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Registry } from 'prom-client'
import { answer, isAsk, lineChannel, notice, PeerGone, type Send } from '../util/rpc.js'
import { hashingRequests, hashingShare, isHashingRefusal, PasswordHasher, type HashEngine } from './hasher.js'
import type { HashingSettings } from './hashing-engine.js'
import { hashPassword, verifyPassword } from './verify.js'
import { DEFAULT_LOG_BUFFER_BYTES } from '../log-buffer.js'
import { createProcessLogger, logProcessWarnings } from '../logging.js'
import { registerHashingMetrics } from './hashing-metrics.js'
import { latestAtMostEvery } from '../util/latest-at-most-every.js'

const settings = JSON.parse(process.argv[2] ?? '{}') as HashingSettings
// Relative to the instance's own nice value (this process starts with it),
// so an instance run under `nice` keeps the same gap to its workers; 19 is the floor.
const HASHING_PRIORITY = Math.min(os.constants.priority.PRIORITY_LOW, os.getPriority() + settings.nice)
/** libuv names its pool threads so (Linux); argon2 runs on them. */
const POOL_THREAD = 'libuv-worker'

function threadName (tid: string): string {
  try { return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() } catch { return '' } // exited since
}

/**
 * Lowers every thread but the main thread and one pool thread, which keep
 * the instance's priority: a floor under the hashing rate. A storm of shed
 * answers keeps the HTTP workers runnable all the time, and against them
 * threads at nice 10 get a tenth of a core each; the one thread at their
 * priority gets its fair share. With one hashing thread, that thread is
 * lowered too.
 */
function lowerPriority (floorThreads: number): void {
  let threads: string[] = []
  try { threads = readdirSync('/proc/self/task') } catch {} // not Linux: the priority is the process's
  if (threads.length === 0) {
    os.setPriority(HASHING_PRIORITY)
    return
  }
  let kept = 0
  for (const tid of threads) {
    if (Number(tid) === process.pid) continue
    if (kept < floorThreads && threadName(tid) === POOL_THREAD) {
      kept++
      continue
    }
    try { os.setPriority(Number(tid), HASHING_PRIORITY) } catch {} // a thread that has exited since
  }
}

/** Hashes over which the cost of one is averaged: a few hundred milliseconds of hashing on two threads. */
const COST_WINDOW = 8
/** This process's CPU time (every thread) in ms when each of the last hashes finished, oldest first; the first is the time it became ready. */
const cpuAtFinish: number[] = []
const cpuMs = (): number => { const { user, system } = process.cpuUsage(); return (user + system) / 1000 }
let measuredCostMs: number | undefined

/**
 * What one hash costs in CPU time, in ms, over the last few: the time a
 * hashing thread needs when it has a core. Unlike a hash's wall time or the
 * hashes finished per second, it does not grow when other processes take
 * the CPU (a storm of shed answers): an estimate that followed the storm
 * down would admit fewer, shed more and feed the storm (docs/decisions.md,
 * "The bound in time, on by default"). The rest of this process (the queue,
 * the workers' messages) is a fraction of a millisecond per hash and counts in.
 */
async function costed<T> (work: Promise<T>): Promise<T> {
  const value = await work
  const now = cpuMs()
  cpuAtFinish.push(now)
  if (cpuAtFinish.length > COST_WINDOW + 1) cpuAtFinish.shift()
  measuredCostMs = (now - (cpuAtFinish[0] ?? now)) / (cpuAtFinish.length - 1)
  return value
}

const engine: HashEngine = {
  get costMs () { return measuredCostMs },
  hash: async (password) => await costed(hashPassword(password)),
  verify: async (encodedHash, password) => await costed(verifyPassword(encodedHash, password))
}

// A line like every other process's: JSON, redacted, bounded, at the
// instance's level. A failed request is logged here at error and answered as failed.
// Its drops are not in the metrics (its registry holds the queue's alone); the warn line after the reader's return says them.
const { logger } = createProcessLogger({ logLevel: settings.logLevel ?? 'info', logBufferBytes: DEFAULT_LOG_BUFFER_BYTES })
logProcessWarnings(logger)
// A bug here is one line in the log, not Node's stack on stderr (where a
// secret on the error would be printed unredacted); the primary starts another.
process.on('uncaughtException', (err) => {
  logger.error({ err }, 'the hashing process failed; exiting')
  process.exit(1)
})

const workers = new Set<Send>()
const tellWorkers = (kind: string, body: unknown): void => {
  for (const send of workers) {
    try { send(notice(kind, body)) } catch {} // a worker that is gone; its close removes it
  }
}
let saturated = false
// The share moves with the measured cost of a hash, a little at almost every hash: announced at most once a second.
const shareAnnouncer = latestAtMostEvery<number>(settings.shareAnnounceIntervalMs, (share) => { tellWorkers('hashing-share', share) })
const hasher: PasswordHasher = new PasswordHasher({
  // One job per hashing thread: a job handed over starts at once, so its
  // wait in this queue is all its wait (two per thread saved no
  // measurable time and hid a hash's worth of waiting in the pool).
  concurrency: settings.concurrency,
  depth: settings.depth,
  ...(settings.maxWaitMs === undefined ? {} : { maxWaitMs: settings.maxWaitMs }),
  engine,
  onSaturationChange: (full) => {
    saturated = full
    tellWorkers('hashing-saturated', full)
  },
  // The workers' shares follow the measured cost (a second late at most), so together they let past the check about what it
  // drains in time; the queue refuses the rest itself.
  onCapacityChange: () => { shareAnnouncer.offer(hashingShare(hasher, settings.workers)) }
})
const requests = hashingRequests(hasher)
const onFailure = (err: unknown, kind: string): void => {
  // An answer to a worker that died meanwhile (its close removes it): nothing failed here.
  if (err instanceof PeerGone) return
  logger.error({ err, kind }, 'a request to the hashing process failed')
}
const registry = new Registry()
registerHashingMetrics(registry, hasher)

const send: Send = (message) => { if (process.connected) process.send?.(message) }
process.on('message', (message) => {
  if (!isAsk(message)) return
  answer(send, message, { 'metrics-json': async () => await registry.getMetricsAsJSON() }, () => false, onFailure)
})
// The primary decides when hashing ends (after its workers drained: their
// in-flight logins still need it), so a Ctrl-C to the whole process group
// is not ours to act on; the primary closing the channel is.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})
// The channel closes when the primary stops, or dies (kill -9): the socket's
// directory goes with the instance either way, which a dead primary could not see to.
process.on('disconnect', () => {
  if (settings.socketPath !== undefined) rmSync(path.dirname(settings.socketPath), { recursive: true, force: true })
  process.exit(0)
})

const server = createServer((socket) => {
  const toWorker = lineChannel(socket, (message) => {
    if (isAsk(message)) answer(toWorker, message, requests, isHashingRefusal, onFailure)
  })
  workers.add(toWorker)
  socket.on('error', () => {}) // a worker that died; its close follows
  socket.once('close', () => { workers.delete(toWorker) })
  toWorker(notice('hashing-saturated', saturated))
  toWorker(notice('hashing-share', hashingShare(hasher, settings.workers)))
})
// The socket of a process that died before this one (the primary starts another at the same path).
if (settings.socketPath !== undefined) {
  rmSync(settings.socketPath, { force: true })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(settings.socketPath, resolve)
  })
  server.removeAllListeners('error')
  // A connection not accepted (out of descriptors): that worker's ask fails and its next one connects again.
  server.on('error', (err) => { logger.error({ err }, 'the hashing process could not accept a worker\'s connection') })
}
// libuv starts every pool thread at the first piece of work: start them now,
// so each can be given its priority before the first hash.
await new Promise((resolve) => pbkdf2('', '', 1, 1, 'sha256', resolve))
lowerPriority(settings.concurrency > 1 ? 1 : 0)
cpuAtFinish.push(cpuMs())
send(notice('ready', { pid: process.pid, priority: HASHING_PRIORITY }))

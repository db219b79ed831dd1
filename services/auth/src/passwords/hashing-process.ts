/**
 * The instance's hashing process: argon2 (and any stored format's verify, see
 * passwords/verify.ts) on every core, all threads but one at a lowered OS
 * priority (TESSERA_HASH_NICE, the first argument, added to the instance's),
 * so the HTTP workers' event loops and Postgres take most of the CPU whenever
 * they want it, while one hashing thread at their priority keeps a floor under
 * the login rate (docs/decisions.md, "Hashing priority: nice 10" and "Login
 * under a flood: a queue bounded in time, a hashing thread at full
 * priority"). Started by the primary (passwords/hashing-engine.ts) with
 * UV_THREADPOOL_SIZE and the second argument set to the hashing concurrency,
 * the third to the instance's log level; asked over IPC.
 *
 * On Linux a nice value belongs to a thread, and an unprivileged thread can
 * lower its priority but never raise it again: so the libuv pool is started
 * before the first hash, and then every thread is lowered except the one
 * pool thread that keeps the instance's priority.
 * @module
 */
import { pbkdf2 } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import { answer, isAsk, notice, type Send } from '../util/rpc.js'
import type { Costed } from './hashing-engine.js'
import { hashPassword, verifyPassword } from './verify.js'
import type { LevelWithSilent } from 'pino'
import { DEFAULT_LOG_BUFFER_BYTES } from '../log-buffer.js'
import { createProcessLogger, logProcessWarnings } from '../logging.js'

// Relative to the instance's own nice value (this process starts with it),
// so an instance run under `nice` keeps the same gap to its workers; 19 is the floor.
const HASHING_PRIORITY = Math.min(os.constants.priority.PRIORITY_LOW, os.getPriority() + Number(process.argv[2]))
/** libuv names its pool threads so (Linux); argon2 runs on them. */
const POOL_THREAD = 'libuv-worker'

function threadName (tid: string): string {
  try { return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() } catch { return '' } // exited since
}

/**
 * Lowers every thread but one pool thread, which keeps the instance's
 * priority: a floor under the hashing rate. A storm of shed answers keeps
 * the HTTP workers runnable all the time, and against them threads at nice
 * 10 get a tenth of a core each; the one thread at their priority gets its
 * fair share. With one hashing thread, that thread is lowered too.
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

/**
 * What one hash costs in CPU time, in ms, over the last few: the time a
 * hashing thread needs when it has a core. Unlike a hash's wall time or the
 * hashes finished per second, it does not grow when other processes take
 * the CPU (a storm of shed answers): an estimate that followed the storm
 * down would admit fewer, shed more and feed the storm (docs/decisions.md,
 * "The bound in time, on by default"). The rest of this process (IPC, JSON)
 * is a fraction of a millisecond per hash and counts in.
 */
function costOfOne (): number {
  const now = cpuMs()
  cpuAtFinish.push(now)
  if (cpuAtFinish.length > COST_WINDOW + 1) cpuAtFinish.shift()
  return (now - (cpuAtFinish[0] ?? now)) / (cpuAtFinish.length - 1)
}

async function costed<T> (work: Promise<T>): Promise<Costed<T>> {
  const value = await work
  return { value, costMs: costOfOne() }
}

const send: Send = (message) => { if (process.connected) process.send?.(message) }
const handlers = {
  hash: async (body: { password: string }) => await costed(hashPassword(body.password)),
  verify: async (body: { encodedHash: string, password: string }) => await costed(verifyPassword(body.encodedHash, body.password))
}
// A line like every other process's: JSON, redacted, bounded, at the
// instance's level (the third argument). A failed request is logged here at
// error; the primary answers it 500 on its side.
// Its drops are not in the metrics (it has no registry; the primary's is not its); the warn line after the reader's return says them.
const { logger } = createProcessLogger({ logLevel: (process.argv[4] ?? 'info') as LevelWithSilent, logBufferBytes: DEFAULT_LOG_BUFFER_BYTES })
logProcessWarnings(logger)
// A bug here is one line in the log, not Node's stack on stderr (where a
// secret on the error would be printed unredacted); the primary starts another.
process.on('uncaughtException', (err) => {
  logger.error({ err }, 'the hashing process failed; exiting')
  process.exit(1)
})
process.on('message', (message) => {
  if (!isAsk(message)) return
  answer(send, message, handlers, () => false, (err, kind) => { logger.error({ err, kind }, 'a request to the hashing process failed') })
})
// The primary decides when hashing ends (after its workers drained: their
// in-flight logins still need it), so a Ctrl-C to the whole process group
// is not ours to act on; the primary closing the channel is.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})
process.on('disconnect', () => process.exit(0))
// libuv starts every pool thread at the first piece of work: start them now,
// so each can be given its priority before the first hash.
await new Promise((resolve) => pbkdf2('', '', 1, 1, 'sha256', resolve))
const poolSize = Number(process.argv[3])
lowerPriority(poolSize > 1 ? 1 : 0)
cpuAtFinish.push(cpuMs())
send(notice('ready', { pid: process.pid, priority: os.getPriority() }))

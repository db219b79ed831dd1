/**
 * The instance's hashing process: argon2 (and any stored format's verify, see
 * passwords/verify.ts) on every core at a lowered OS priority
 * (TESSERA_HASH_NICE, the first argument, added to the instance's), so the HTTP workers' event loops
 * and Postgres take most of the CPU whenever they want it and hashing still
 * keeps a share (docs/decisions.md, "Hashing priority: nice 10"). Started by
 * the primary (passwords/hashing-engine.ts) with UV_THREADPOOL_SIZE set to the
 * hashing concurrency; asked over IPC.
 *
 * On Linux a nice value belongs to a thread, and a new thread inherits its
 * creator's: lowering this (main) thread first makes the libuv pool threads
 * argon2 runs on, started at the first hash, inherit it; threads started
 * while the modules loaded are lowered one by one.
 * @module
 */
import { readdirSync } from 'node:fs'
import os from 'node:os'
import { answer, isAsk, notice, type Send } from '../cluster/rpc.js'
import { hashPassword, verifyPassword } from './verify.js'

// Relative to the instance's own nice value (this process starts with it),
// so an instance run under `nice` keeps the same gap to its workers; 19 is the floor.
const HASHING_PRIORITY = Math.min(os.constants.priority.PRIORITY_LOW, os.getPriority() + Number(process.argv[2]))

function lowerPriority (): void {
  os.setPriority(HASHING_PRIORITY)
  let threads: string[] = []
  try { threads = readdirSync('/proc/self/task') } catch {} // not Linux: the priority is the process's
  for (const tid of threads) {
    try { os.setPriority(Number(tid), HASHING_PRIORITY) } catch {} // a thread that has exited since
  }
}

lowerPriority()
const send: Send = (message) => { if (process.connected) process.send?.(message) }
const handlers = {
  hash: async (body: { password: string }) => await hashPassword(body.password),
  verify: async (body: { encodedHash: string, password: string }) => await verifyPassword(body.encodedHash, body.password)
}
process.on('message', (message) => {
  if (!isAsk(message)) return
  answer(send, message, handlers, () => false, (err) => {
    process.stderr.write(`tessera hashing process: ${err instanceof Error ? err.message : String(err)}\n`)
  })
})
// The primary decides when hashing ends (after its workers drained: their
// in-flight logins still need it), so a Ctrl-C to the whole process group
// is not ours to act on; the primary closing the channel is.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})
process.on('disconnect', () => process.exit(0))
send(notice('ready', { pid: process.pid, priority: os.getPriority() }))

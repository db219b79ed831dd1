/**
 * Node IPC round trips per second between a parent and a child process
 * (child_process's channel, JSON messages, as node:cluster carries them):
 * what Tessera pays per rate-limited request, whose per-IP counter lives in
 * the instance's primary (services/auth/src/cluster/rate-limit.ts). For
 * reading beside the client_credentials and refresh ceilings.
 *
 * Run as a script, it is the child: it answers every message with its id.
 * @module
 */
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const SELF = fileURLToPath(import.meta.url)

/**
 * `inFlight` asks at once (the scenario's connections), each answered before
 * the next is sent, for `seconds`. The ask is the rate-limit store's own shape.
 * @param {number} inFlight @param {number} seconds
 */
export async function ipcRoundTripRate (inFlight, seconds) {
  const child = fork(SELF, ['answer'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [] })
  /** @type {Map<number, () => void>} */
  const waiting = new Map()
  child.on('message', (/** @type {{ id: number }} */ message) => {
    const resolve = waiting.get(message.id)
    waiting.delete(message.id)
    resolve?.()
  })
  let next = 0
  const ask = async () => await new Promise((resolve) => {
    const id = next++
    waiting.set(id, () => resolve(undefined))
    child.send({ tessera: 'ask', id, kind: 'rate', body: { key: '127.0.0.1', timeWindow: 60_000, max: 1_000_000 } })
  })
  try {
    await ask()
    const deadline = performance.now() + seconds * 1000
    const started = performance.now()
    let done = 0
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await ask()
        done++
      }
    }))
    return Math.round(done / ((performance.now() - started) / 1000))
  } finally {
    child.kill()
  }
}

if (process.argv[1] === SELF && process.argv[2] === 'answer') {
  let count = 0
  process.on('message', (/** @type {{ id: number }} */ message) => {
    process.send?.({ tessera: 'answer', id: message.id, body: { current: ++count, ttl: 60_000 } })
  })
}

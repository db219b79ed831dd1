/**
 * A real Postgres reached through a relay that can go silent, for what no
 * stopped or restarted server shows: a connection that stays open but is
 * never answered again.
 */
import { once } from 'node:events'
import net from 'node:net'
import type { Teardown } from './test-database.js'

/**
 * When the relay's connections go silent on their own, before any `silence`:
 * `'start'`, at once (the server accepts TCP and never answers, not even the
 * start-up); `'first-statement'`, at the first statement each connection
 * sends, its start-up and authentication through (a server that froze just
 * after letting the client in).
 */
export type SilentFrom = 'start' | 'first-statement'

/** Whether a client's bytes so far reach a statement: a simple Query ('Q') or the Parse ('P') of an extended one. */
function statementReader (): (chunk: Buffer) => number | undefined {
  let pending = Buffer.alloc(0)
  // The start-up message has no type byte, only its length; every later message has one.
  let typed = false
  let offset = 0
  return (chunk) => {
    const before = pending.length
    pending = Buffer.concat([pending, chunk])
    while (true) {
      const header = typed ? 5 : 4
      if (pending.length - offset < header) return undefined
      const type = typed ? String.fromCharCode(pending[offset] ?? 0) : ''
      if (type === 'Q' || type === 'P') return offset - before
      const length = pending.readInt32BE(typed ? offset + 1 : offset) + (typed ? 1 : 0)
      if (pending.length - offset < length) return undefined
      offset += length
      typed = true
    }
  }
}

/**
 * A TCP relay to Postgres whose open connections can be silenced: what either
 * side sends through them is dropped from then on, as when a failover leaves
 * the old server's address unanswering or the network partitions. Connections
 * made after that go through, as to the new server, unless `silentFrom` makes
 * every connection go silent by itself.
 */
export async function silenceableRelay (t: Teardown, target: URL, options: { silentFrom?: SilentFrom } = {}): Promise<{ url: string, silence: () => void }> {
  const open = new Set<{ silent: boolean, sockets: net.Socket[] }>()
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port), target.hostname)
    const pair = { silent: options.silentFrom === 'start', sockets: [down, up] }
    open.add(pair)
    const statementAt = options.silentFrom === 'first-statement' ? statementReader() : undefined
    down.on('data', (chunk: Buffer) => {
      if (pair.silent) return
      const at = statementAt?.(chunk)
      if (at !== undefined) {
        // What precedes the statement in this chunk goes through; the statement and all after it do not.
        up.write(chunk.subarray(0, Math.max(0, at)))
        pair.silent = true
        return
      }
      up.write(chunk)
    })
    up.on('data', (chunk: Buffer) => { if (!pair.silent) down.write(chunk) })
    for (const [from, to] of [[down, up], [up, down]] as const) {
      from.on('close', () => { to.destroy(); open.delete(pair) })
      from.on('error', () => {})
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const pair of open) for (const socket of pair.sockets) socket.destroy()
    server.close()
  })
  const url = new URL(target)
  url.hostname = '127.0.0.1'
  url.port = String((server.address() as net.AddressInfo).port)
  return { url: url.toString(), silence: () => { for (const pair of open) pair.silent = true } }
}

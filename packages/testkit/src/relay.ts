/**
 * A real Postgres reached through a relay that can go silent, for what no
 * stopped or restarted server shows: a connection that stays open but is
 * never answered again.
 */
import { once } from 'node:events'
import net from 'node:net'
import type { Teardown } from './test-database.js'

/**
 * A TCP relay to Postgres whose open connections can be silenced: what either
 * side sends through them is dropped from then on, as when a failover leaves
 * the old server's address unanswering or the network partitions. Connections
 * made after that go through, as to the new server.
 */
export async function silenceableRelay (t: Teardown, target: URL): Promise<{ url: string, silence: () => void }> {
  const open = new Set<{ silent: boolean, sockets: net.Socket[] }>()
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port), target.hostname)
    const pair = { silent: false, sockets: [down, up] }
    open.add(pair)
    const relay = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk) => { if (!pair.silent) to.write(chunk) })
      from.on('close', () => { to.destroy(); open.delete(pair) })
      from.on('error', () => {})
    }
    relay(down, up)
    relay(up, down)
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

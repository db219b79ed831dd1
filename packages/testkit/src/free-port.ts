import { randomInt } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/** Where the picked ports start: above the well-known services a machine may run. */
const LOWEST = 20_000

/**
 * Where the kernel's range for ports it picks itself starts: for a listen on
 * port 0 and for every outgoing connection's local port (Linux: 32768 by default).
 */
function ephemeralStart (): number | undefined {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    return Number.isInteger(low) ? low : undefined
  } catch {
    return undefined
  }
}

async function listenOnce (port: number): Promise<number | undefined> {
  return await new Promise((resolve) => {
    const server = createServer()
    server.on('error', () => { resolve(undefined) })
    server.listen(port, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => { resolve(typeof address === 'object' && address !== null ? address.port : undefined) })
    })
  })
}

/**
 * A loopback TCP port that was free a moment ago, for a server the caller
 * starts next (Nginx, a test's own). Picked below the kernel's ephemeral
 * range, not by listening on port 0: a port from that range is what the
 * kernel also hands to every other listen on port 0 on the machine (each
 * Tessera a test starts with PORT=0, the embedded Postgres's port) and to
 * outgoing connections' local ports, and any of them can take it between
 * our release and the server's bind, which then fails with EADDRINUSE
 * (gateway.test, once, three test files at once). Below the range the
 * kernel hands out nothing: only another pick like this one can collide, at
 * random among some ten thousand ports. Where the range leaves no room, or
 * is unknown, the kernel picks.
 */
export async function freePort (): Promise<number> {
  const below = (ephemeralStart() ?? 0) - LOWEST
  const tries = below > 1000 ? 50 : 0
  for (let tried = 0; tried < tries; tried++) {
    const port = await listenOnce(LOWEST + randomInt(below))
    if (port !== undefined) return port
  }
  const port = await listenOnce(0)
  if (port === undefined) throw new Error('no free loopback port')
  return port
}

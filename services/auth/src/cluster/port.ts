/**
 * How an instance's HTTP workers share its port. Where the kernel spreads
 * connections itself (SO_REUSEPORT, Linux), every worker listens on the port
 * on its own and the primary accepts none. node:cluster's round-robin, used
 * elsewhere, has the primary accept each connection and hand it to a worker;
 * a connection handed to a worker that dies before taking it (a crash, a
 * kill -9, a recycle) is never handed to another: it stays open in the
 * primary, unanswered, until its client gives up. With SO_REUSEPORT a dying
 * worker's not-yet-accepted connections are reset instead (none are, with the
 * kernel's net.ipv4.tcp_migrate_req=1), which a client or gateway retries.
 * @module
 */
import { createServer } from 'node:net'

export interface SharedPort {
  port: number
  /** Each worker listens itself (SO_REUSEPORT); otherwise through node:cluster's primary. */
  reusePort: boolean
}

/**
 * The port every worker of this instance listens on, resolved once, before
 * they start: with SO_REUSEPORT, port 0 would give each worker a port of its
 * own. The probe listens without SO_REUSEPORT, so a port anything else holds
 * (another Tessera instance's workers too) fails here with EADDRINUSE, as it
 * always did, rather than being shared with it.
 */
export async function sharedPortFor (host: string, port: number): Promise<SharedPort> {
  if (process.platform !== 'linux') return { port, reusePort: false }
  const probe = createServer()
  const resolved = await new Promise<number>((resolve, reject) => {
    probe.once('error', reject)
    probe.listen({ host, port }, () => {
      const address = probe.address()
      resolve(typeof address === 'object' && address !== null ? address.port : port)
    })
  })
  await new Promise((resolve) => probe.close(resolve))
  return { port: resolved, reusePort: true }
}

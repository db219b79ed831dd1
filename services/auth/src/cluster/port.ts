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
import { StartupError } from './startup.js'

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
    probe.once('error', (err) => { reject(hostRefused(err, host)) })
    probe.listen({ host, port }, () => {
      const address = probe.address()
      resolve(typeof address === 'object' && address !== null ? address.port : port)
    })
  })
  await new Promise((resolve) => probe.close(resolve))
  return { port: resolved, reusePort: true }
}

/**
 * A listen on HOST that failed for the address itself. Node's error names no
 * setting, and a name that does not resolve ("getaddrinfo ENOTFOUND …") was
 * reported as the database's ("cannot reach the database"): the one line the
 * start fails with names HOST, as notes' does. Any other error is returned as
 * it is.
 */
export function hostRefused (err: unknown, host: string): unknown {
  const { code, message } = err as NodeJS.ErrnoException
  const named = `HOST=${JSON.stringify(host)}`
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new StartupError(`${named} does not resolve to an address (${message})`)
  if (code === 'EADDRNOTAVAIL') return new StartupError(`${named} is not an address of this machine (${message})`)
  return err
}

/**
 * Held by the primary for its whole life, taken before sharedPortFor's probe:
 * the probe alone leaves the port free from its close until the workers
 * listen (half a second or more), and an instance started in that gap passed
 * its own probe and joined the first's workers on the port, each answering
 * about half the connections from its own database and keys. The claim is an
 * abstract Unix socket (Linux, per network namespace, as ports are), named by
 * the configured address: only one process can bind a name, and the kernel
 * frees it when that process dies, even by kill -9, so none is ever left
 * stale. Port 0 gets a port no one else is given, and needs none.
 */
export async function claimPort (host: string, port: number): Promise<() => Promise<void>> {
  if (process.platform !== 'linux' || port === 0) return async () => {}
  const claim = createServer()
  await new Promise<void>((resolve, reject) => {
    claim.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? Object.assign(new Error(`another Tessera instance has ${host}:${port}, or is starting on it`), { code: err.code, port }) : err)
    })
    claim.listen({ path: `\0tessera-port ${host} ${port}` }, resolve)
  })
  // Never what keeps the primary running: its drain ends with it.
  claim.unref()
  return async () => { await new Promise((resolve) => claim.close(resolve)) }
}

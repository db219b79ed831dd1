/**
 * The embedded test clusters that scripts/with-test-db.mjs keeps in memory
 * (/dev/shm/tessera-test-<hash>, one per checkout) outlive their checkout: a
 * clone made for one run (CI clones into `mktemp -d` and deletes it) leaves
 * about 80 MB of memory taken until the machine reboots. Each cluster
 * records the checkout it belongs to, and a run starting in any checkout
 * removes the clusters of checkouts that are gone.
 * @module
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const TEST_CLUSTER_PREFIX = 'tessera-test-'
/** The file in a cluster's directory that names its checkout. */
const CHECKOUT_FILE = 'checkout'
/** A directory younger than this may be a run's that is still setting up: left alone. */
const SETTLING_MS = 60_000

/** Records `checkout` as the owner of the cluster directory `dir`. */
export function recordClusterCheckout (dir: string, checkout: string): void {
  writeFileSync(join(dir, CHECKOUT_FILE), `${checkout}\n`, { mode: 0o644 })
}

/** Whether a postmaster runs on `pgdata`, from its postmaster.pid (first line: the pid). */
function postmasterRunning (pgdata: string): boolean {
  let pid: number
  try {
    pid = Number(readFileSync(join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0])
  } catch {
    return false
  }
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // Alive, but another user's: still running.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Whether `file` does not exist; one that cannot be looked up for another reason (a symlink loop, a directory above it closed to this user) may still be there. */
function certainlyGone (file: string): boolean {
  try {
    statSync(file)
    return false
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return code === 'ENOENT' || code === 'ENOTDIR'
  }
}

/**
 * Removes the test clusters under `parent` that this user owns, other than
 * `own`, whose checkout certainly no longer exists (or was never recorded:
 * made before checkouts were) and on which no postmaster runs. Returns what
 * it removed.
 */
export function pruneOrphanTestClusters (parent: string, own: string, now = Date.now()): string[] {
  const removed: string[] = []
  let names: string[]
  try {
    names = readdirSync(parent)
  } catch {
    return removed
  }
  for (const name of names) {
    const dir = join(parent, name)
    if (!name.startsWith(TEST_CLUSTER_PREFIX) || dir === own) continue
    try {
      const stat = statSync(dir)
      if (!stat.isDirectory() || stat.uid !== process.getuid?.() || now - stat.mtimeMs < SETTLING_MS) continue
      // As written, never trimmed: a checkout's name may end in a space.
      const checkout = existsSync(join(dir, CHECKOUT_FILE)) ? readFileSync(join(dir, CHECKOUT_FILE), 'utf8').replace(/\n$/, '') : undefined
      if (checkout !== undefined && !certainlyGone(checkout)) continue
      if (postmasterRunning(join(dir, 'postgres'))) continue
      rmSync(dir, { recursive: true, force: true })
      removed.push(dir)
    } catch {
      // Removed or changed by another run meanwhile: its business.
    }
  }
  return removed
}

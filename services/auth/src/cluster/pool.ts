/**
 * How an instance's database connections are split between its processes:
 * the instance keeps about 20, as one process did; the primary holds a few
 * (PRIMARY_POOL for its start, migrations included, then only for reading
 * Postgres's clock every 10 s, db/database-clock.ts;
 * KEY_POOL for the key work and one for cleanup, bounded apart)
 * and each HTTP worker a share, never fewer than 4.
 * @module
 */
import type { ConnectionRoom } from '../db/connection-room.js'

const INSTANCE_POOL = 20
const MIN_WORKER_POOL = 4
export const PRIMARY_POOL = 2
/** The key work's connections (jobs.ts): a reload and a lifecycle step can run at once. */
export const KEY_POOL = 2
/** Cleanup's one connection (jobs.ts): runs never overlap, and a run's statements follow one another. */
export const CLEANUP_POOL = 1
/** The primary's LISTEN connection (db/listen.ts), outside every pool. */
const LISTENER = 1

export function workerPoolSize (workers: number): number {
  return Math.max(MIN_WORKER_POOL, Math.ceil(INSTANCE_POOL / workers))
}

/** The primary's connections once it serves: its own pool, the key work's, cleanup's and the LISTEN. */
export const PRIMARY_CONNECTIONS = PRIMARY_POOL + KEY_POOL + CLEANUP_POOL + LISTENER

/**
 * The most connections an instance of `workers` HTTP workers holds on
 * Postgres at once: every pool full, and the LISTEN. The start's own two
 * (the bounded reads and the NOTIFY check) are closed before the workers
 * start, so they never add to it.
 */
export function instanceConnections (workers: number): number {
  return workers * workerPoolSize(workers) + PRIMARY_CONNECTIONS
}

/**
 * The start's warning when the instance may need more connections than its
 * role may open, or undefined when they fit. A warning, not a refusal: pools
 * fill only under load, and several instances may share one server, which no
 * one of them can count.
 */
export function connectionsWarning (workers: number, room: ConnectionRoom, embedded: boolean): string | undefined {
  const needed = instanceConnections(workers)
  if (needed <= room.limit) return undefined
  const remedy = room.bound === 'server'
    ? embedded
      // Each start sizes the embedded Postgres for its workers (db/embedded.ts); one already running keeps what it started with.
      ? 'restart the embedded Postgres (`tessera db stop`; the next start sizes max_connections for TESSERA_WORKERS)'
      : 'raise the server\'s max_connections'
    : room.bound === 'role'
      ? `raise the role's limit (ALTER ROLE ${room.role} CONNECTION LIMIT …)`
      : `raise the database's limit (ALTER DATABASE ${room.database} CONNECTION LIMIT …)`
  return `this instance may hold up to ${needed} connections to Postgres (TESSERA_WORKERS=${workers}: ${workers} × ${workerPoolSize(workers)} for the HTTP workers, ${PRIMARY_CONNECTIONS} for the primary), more than the ${room.limit} that role ${room.role} may open (${room.because}); past that, requests are answered 503 and key work fails: lower TESSERA_WORKERS, or ${remedy} (docs/operators.md, "Open files and connections")`
}

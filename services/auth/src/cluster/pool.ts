/**
 * How an instance's database connections are split between its processes:
 * the instance keeps about 20, as one process did; the primary holds a few
 * (PRIMARY_POOL for its start, migrations included, then only for reading
 * Postgres's clock every 10 s, db/database-clock.ts;
 * jobs.ts's KEY_POOL for the key work and one for cleanup, bounded apart)
 * and each HTTP worker a share, never fewer than 4.
 * @module
 */
const INSTANCE_POOL = 20
const MIN_WORKER_POOL = 4
export const PRIMARY_POOL = 2

export function workerPoolSize (workers: number): number {
  return Math.max(MIN_WORKER_POOL, Math.ceil(INSTANCE_POOL / workers))
}

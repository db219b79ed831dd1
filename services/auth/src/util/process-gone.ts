/**
 * Whether a process has exited, for the embedded Postgres's starts and stops
 * (db/embedded.ts), which wait on processes they did not fork.
 * @module
 */
import { readFileSync } from 'node:fs'

/** Whether `pid` has exited: no such process, or one that exited and is waiting to be reaped (a zombie). */
export function processIsGone (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as { code?: string }).code === 'ESRCH'
  }
  // An exited child not yet reaped still takes signals: a postmaster we
  // stopped is ours to reap when Tessera runs as PID 1 with no init, and
  // would otherwise be waited for a minute and reported as not stopping.
  try {
    return /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

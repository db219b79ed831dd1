/**
 * Whether this process has a file descriptor left, asked on a timer. Past
 * RLIMIT_NOFILE a server's accept fails, and libuv closes each new
 * connection at once (its EMFILE trick) without telling Node: clients see
 * resets and nothing is logged (docs/operators.md, "Open files and
 * connections"). Opening /dev/null is the cheapest question that fails the
 * same way; it is asked once a second, and a change is told once.
 * @module
 */
import { closeSync, openSync } from 'node:fs'

export interface DescriptorWatch {
  stop: () => void
}

const EXHAUSTED = new Set(['EMFILE', 'ENFILE'])

/**
 * Calls `exhausted` with the error's code (EMFILE: this process's limit;
 * ENFILE: the system's) when a descriptor cannot be had, and `recovered`
 * when one can again; nothing while either stays so.
 */
export function watchDescriptors (options: { everyMs: number, exhausted: (code: string) => void, recovered: () => void }): DescriptorWatch {
  let out = false
  const timer = setInterval(() => {
    let code: string | undefined
    try {
      closeSync(openSync('/dev/null', 'r'))
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code
    }
    const nowOut = code !== undefined && EXHAUSTED.has(code)
    if (nowOut === out) return
    out = nowOut
    if (code !== undefined && nowOut) options.exhausted(code)
    else options.recovered()
  }, options.everyMs)
  timer.unref()
  return { stop: () => { clearInterval(timer) } }
}

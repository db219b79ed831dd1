/**
 * Node's process warnings, handed to the process's own way of saying them
 * (logging.ts's log line, the CLI's one line on stderr).
 * @module
 */

/** A process warning as Node hands it to 'warning' listeners (process.emitWarning): `code` and `detail` when the emitter gave them. */
export type ProcessWarning = Error & { code?: unknown, detail?: unknown }

/**
 * Hands every process warning (a dependency's DeprecationWarning,
 * MaxListenersExceededWarning, ExperimentalWarning)
 * to `say` instead of Node's own listener, which prints each as several
 * lines of text on stderr (`(node:PID) Warning: …`, the detail, a hint):
 * text in the middle of a JSON log, and on stderr, which a stalled reader
 * may have closed. A listener of our own beside Node's would not stop its
 * printing; removing Node's does. Warnings the operator silenced
 * (--no-warnings, NODE_NO_WARNINGS=1: Node then adds no listener) stay
 * silent. Node emits a warning on a later tick, so one raised while this
 * process's modules were loading reaches `say` too, when this is called in
 * the same turn as they load.
 */
export function onProcessWarning (say: (warning: ProcessWarning) => void): void {
  if (process.listenerCount('warning') === 0) return
  process.removeAllListeners('warning')
  process.on('warning', say)
}

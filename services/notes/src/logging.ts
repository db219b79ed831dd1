/**
 * notes' logger on its stdout, with what its reader has not taken bounded.
 * The same few lines as Tessera's createProcessLogger
 * (services/auth/src/logging.ts), copied rather than imported: notes builds
 * and ships on its own and imports nothing of Tessera's source, and a
 * shared package for a dozen lines would tie the two services' releases.
 * @module
 */
import { pino, type Logger, type LoggerOptions } from 'pino'
import type { Config } from './config.js'

/**
 * A logger on stdout, asynchronous as pino's default, with at most
 * `logBufferBytes` waiting for the reader. pino's default stream,
 * sonic-boom, holds without bound what a stalled reader (journald, a
 * container's log driver, a paused pipe) has not taken, one request line
 * after another until the out-of-memory killer. Past the bound a line is
 * dropped and counted, and once the reader has taken everything again one
 * warn line says how many, so the gap in the log says what it is (notes has
 * no metrics to count them in). A reader that goes away (EPIPE) ends the
 * logging, as pino has it: notes serves on, with no more lines to write.
 */
export function createProcessLogger (config: Pick<Config, 'logLevel' | 'logBufferBytes'>, options: LoggerOptions): Logger {
  // process.stdout.fd, not 1: opening Node's stdout makes a pipe non-blocking,
  // as pino's default stream did, so a write to a stalled reader waits in
  // sonic-boom's retries rather than holding one of libuv's threads.
  const stdout = pino.destination({ dest: process.stdout.fd, sync: false, maxLength: config.logBufferBytes })
  const logger = pino({ ...options, level: config.logLevel }, stdout)
  let unreported = 0
  stdout.on('drop', () => { unreported++ })
  // 'drain': every line buffered is written, so the reader is back.
  stdout.on('drain', () => {
    if (unreported === 0) return
    const lines = unreported
    unreported = 0
    logger.warn({ dropped_lines: lines }, `${lines} log lines were dropped: stdout was not read while ${config.logBufferBytes / 1024} KiB of lines waited (NOTES_LOG_BUFFER_KB)`)
  })
  return logger
}

/**
 * Node's process warnings (a dependency's DeprecationWarning,
 * MaxListenersExceededWarning, pg's SECURITY WARNING for an sslmode in
 * DATABASE_URL) as one warn line each of `logger`, in place of Node's own
 * listener, which prints several lines of text on stderr: not JSON, in the
 * middle of the log. Adding a listener beside Node's would not stop its
 * printing; removing it does. Silenced warnings (--no-warnings,
 * NODE_NO_WARNINGS=1: Node adds no listener) stay silent. As Tessera's
 * logProcessWarnings (services/auth/src/logging.ts).
 */
export function logProcessWarnings (logger: Logger): void {
  if (process.listenerCount('warning') === 0) return
  process.removeAllListeners('warning')
  process.on('warning', (warning: Error & { code?: unknown, detail?: unknown }) => {
    const { name, code, message, detail } = warning
    logger.warn({ warning: { name, code, message, detail } }, 'process warning')
  })
}

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

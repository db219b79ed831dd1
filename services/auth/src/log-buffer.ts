/**
 * The log buffer's default, apart from logging.ts so that the settings
 * (config.ts) read it without loading pino, and the hashing process (which
 * keeps the default) without loading the settings.
 * @module
 */

/**
 * What a process's stdout may hold unwritten before its log lines are
 * dropped, unless TESSERA_LOG_BUFFER_KB says otherwise: sonic-boom, pino's
 * stream, otherwise buffers without bound while the reader of stdout (a
 * container's log driver, journald, a pipe) stalls, and a worker logging
 * ~750 requests a second held 14 MiB more every minute (docs/decisions.md,
 * "A stalled log reader: lines past 4 MiB are dropped and counted").
 */
export const DEFAULT_LOG_BUFFER_BYTES = 4 * 1024 * 1024

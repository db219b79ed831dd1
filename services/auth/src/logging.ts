/**
 * The pino logger. Secrets are redacted wherever they appear in a logged
 * object, at any depth, by a walk in pino's log formatter. pino's own
 * `redact` option needs explicit paths; the wildcard paths that "anywhere"
 * takes cost 19–36 µs on every request's log line (docs/performance.md),
 * while this walk returns the object untouched, allocating nothing, when it
 * holds no secret.
 * @module
 */
import { pino, type Logger, type DestinationStream } from 'pino'
import type { Config } from './config.js'

export const SECRET_KEYS = ['password', 'current_password', 'new_password', 'access_token', 'refresh_token', 'token', 'authorization', 'cookie', 'set-cookie', 'kek', 'private_key_enc', 'privateKey']

const SECRET = new Set(SECRET_KEYS.map((key) => key.toLowerCase()))
const CENSOR = '[redacted]'
/** Deeper than anything we log; bounds the walk on a cyclic or huge object. */
const MAX_DEPTH = 8

function isPlain (value: object): boolean {
  const prototype: unknown = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

/**
 * A copy of `value` with every secret-named member replaced, copying only the
 * objects on the way to a secret. Plain objects and arrays are walked; errors,
 * buffers and other class instances go to their serializers as they are.
 */
export function redactSecrets (value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined
    value.forEach((item: unknown, i) => {
      const redacted = redactSecrets(item, depth + 1)
      if (redacted !== item) (copy ??= [...value])[i] = redacted
    })
    return copy ?? value
  }
  if (!isPlain(value)) return value
  const record = value as Record<string, unknown>
  let copy: Record<string, unknown> | undefined
  for (const key in record) {
    const item = record[key]
    const redacted = SECRET.has(key.toLowerCase()) ? CENSOR : redactSecrets(item, depth + 1)
    if (redacted !== item) (copy ??= { ...record })[key] = redacted
  }
  return copy ?? value
}

export function createLogger (config: Pick<Config, 'logLevel'>, destination?: DestinationStream, pretty = false): Logger {
  const options = {
    level: config.logLevel,
    formatters: { log: (object: Record<string, unknown>) => redactSecrets(object) as Record<string, unknown> },
    // pid: an instance is several processes (a primary, HTTP workers).
    base: { service: 'tessera-auth', pid: process.pid }
  }
  if (destination !== undefined) return pino(options, destination)
  if (pretty) return pino({ ...options, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } })
  return pino(options)
}

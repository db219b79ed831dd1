/**
 * The pino logger. Secrets are redacted wherever they appear, to three levels
 * of nesting: pino's redaction takes explicit paths, not a recursive search.
 * @module
 */
import { pino, type Logger, type DestinationStream } from 'pino'
import type { Config } from './config.js'

const SECRET_KEYS = ['password', 'current_password', 'new_password', 'access_token', 'refresh_token', 'token', 'authorization', 'cookie', 'set-cookie', 'kek', 'private_key_enc', 'privateKey']

const member = (key: string): string => /^[a-z_]+$/i.test(key) ? `.${key}` : `["${key}"]`

export const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [
  /^[a-z_]+$/i.test(key) ? key : `["${key}"]`,
  `*${member(key)}`,
  `*.*${member(key)}`,
  `*.*.*${member(key)}`
])

export function createLogger (config: Pick<Config, 'logLevel'>, destination?: DestinationStream, pretty = false): Logger {
  const options = {
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: 'tessera-auth' }
  }
  if (destination !== undefined) return pino(options, destination)
  if (pretty) return pino({ ...options, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } })
  return pino(options)
}

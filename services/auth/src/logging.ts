/**
 * The pino logger. Secrets are redacted wherever they appear in a logged
 * object, at any depth, by a walk in pino's log formatter. pino's own
 * `redact` option needs explicit paths; the wildcard paths that "anywhere"
 * takes cost 19–36 µs on every request's log line (docs/performance-history.md),
 * while this walk returns the object untouched, allocating nothing, when it
 * holds no secret.
 * @module
 */
import { pino, type Bindings, type ChildLoggerOptions, type DestinationStream, type Level, type LevelWithSilent, type Logger, type LoggerOptions } from 'pino'
import { onProcessWarning } from './util/process-warnings.js'

// `refresh` and `access`: SimpleJWT's names for its tokens (routes/simplejwt.ts), in its bodies.
const SECRET_KEYS = ['password', 'current_password', 'new_password', 'password_hash', 'access_token', 'refresh_token', 'token', 'refresh', 'access', 'client_secret', 'authorization', 'cookie', 'set-cookie', 'kek', 'private_key_enc', 'privateKey']

/** One spelling per secret: `refreshToken`, `refresh_token` and `Refresh-Token` are the same key. */
const spelling = (key: string): string => key.toLowerCase().replace(/[-_]/g, '')
const SECRET = new Set(SECRET_KEYS.map(spelling))
/**
 * Names already judged: every logged line's members are walked, and the
 * names are the code's own few dozen, so a lookup replaces spelling()'s
 * lower-casing and pattern on all but a name's first line (0.6–0.7 µs a
 * request line before, docs/performance-history.md, "Session 40: the JWKS
 * before routing"). Bounded, should some logged object's names be a
 * client's; a name past the bound is judged each time.
 */
const judged = new Map<string, boolean>()
const JUDGED_NAMES = 1024
function isSecretName (key: string): boolean {
  let secret = judged.get(key)
  if (secret === undefined) {
    secret = SECRET.has(spelling(key))
    if (judged.size < JUDGED_NAMES) judged.set(key, secret)
  }
  return secret
}
const CENSOR = '[redacted]'
const FAILING_ROW = 'Failing row contains'
/** Deeper than anything we log; bounds the walk on a cyclic or huge object. */
const MAX_DEPTH = 8

function isPlain (value: object): boolean {
  const prototype: unknown = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

/** Members whose names are secrets, replaced in a copy; the same object when there are none. */
function redactMembers (record: Record<string, unknown>, depth: number): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined
  for (const key in record) {
    const item = record[key]
    const redacted = isSecretName(key) ? CENSOR : redactSecrets(item, depth + 1)
    if (redacted !== item) (copy ??= { ...record })[key] = redacted
  }
  return copy ?? record
}

/**
 * An error holding a secret (a property, or one in its cause) is copied with
 * the secret replaced; an error without one goes to pino's serializer as it is.
 */
function redactError (error: Error, depth: number): unknown {
  const members: Record<string, unknown> = { ...error }
  if (error.cause !== undefined) members.cause = error.cause
  // Postgres's detail of a NOT NULL or CHECK violation is the whole row: on
  // `users`, its password hash; on `signing_keys`, the sealed private half.
  const wholeRow = typeof members.detail === 'string' && members.detail.startsWith(FAILING_ROW)
  if (wholeRow) members.detail = `${FAILING_ROW} ${CENSOR}`
  const redacted = redactMembers(members, depth)
  if (redacted === members && !wholeRow) return error
  // Same prototype, so the serializer still names its type.
  return Object.assign(Object.create(Object.getPrototypeOf(error) as object) as Error, { message: error.message, stack: error.stack }, redacted)
}

/**
 * A copy of `value` with every secret-named member replaced, copying only the
 * objects on the way to a secret. Plain objects, arrays and errors are walked;
 * buffers and other class instances go to their serializers as they are.
 * Anything deeper than the walk goes is replaced too: unexamined is not safe.
 */
export function redactSecrets (value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value
  if (depth > MAX_DEPTH) return CENSOR
  if (value instanceof Error) return redactError(value, depth)
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined
    value.forEach((item: unknown, i) => {
      const redacted = redactSecrets(item, depth + 1)
      if (redacted !== item) (copy ??= [...value])[i] = redacted
    })
    return copy ?? value
  }
  if (!isPlain(value)) return value
  return redactMembers(value as Record<string, unknown>, depth)
}

/** What a logger needs of the settings (config.ts reads them: LOG_LEVEL, TESSERA_LOG_BUFFER_KB in bytes). */
export interface LogSettings { logLevel: LevelWithSilent, logBufferBytes: number }

const loggerOptions = (config: Pick<LogSettings, 'logLevel'>): LoggerOptions => ({
  level: config.logLevel,
  formatters: { log: (object: Record<string, unknown>) => redactSecrets(object) as Record<string, unknown> },
  // pid: an instance is several processes (a primary, HTTP workers).
  base: { service: 'tessera-auth', pid: process.pid }
})

/** A logger writing to `destination`: tests' sinks. */
export function createLogger (config: Pick<LogSettings, 'logLevel'>, destination: DestinationStream): Logger {
  return pino(loggerOptions(config), destination)
}

/** A process's logger on its stdout, and how many lines stdout could not take. */
export interface ProcessLogger {
  logger: Logger
  /** Lines dropped since the process started because its stdout's buffer was full (tessera_log_lines_dropped_total). */
  droppedLines: () => number
}

/**
 * The process's logger on stdout, asynchronous as pino's default, with at
 * most `logBufferBytes` waiting for the reader: a line past that is dropped
 * and counted, and once the reader has taken everything again the process
 * logs how many it dropped meanwhile, so the gap in the log says what it
 * is. A reader that goes away (EPIPE) ends the process's logging, as pino
 * has it: the process serves on, with no more lines to write or count.
 * Pretty lines are for a person at a terminal, which does not stall.
 */
export function createProcessLogger (config: LogSettings, pretty = false): ProcessLogger {
  if (pretty) {
    return { logger: pino({ ...loggerOptions(config), transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } }), droppedLines: () => 0 }
  }
  // process.stdout.fd, not 1: opening Node's stdout makes a pipe non-blocking,
  // as pino's default stream did, so a write to a stalled reader waits in
  // sonic-boom's retries rather than holding one of libuv's threads (in the
  // hashing process, one argon2 runs on). The flag is the shared
  // descriptor's, which a worker's start or exit clears until a process
  // opens its stdout again (docs/decisions.md, "A stalled log reader").
  const stdout = pino.destination({ dest: process.stdout.fd, sync: false, maxLength: config.logBufferBytes })
  const logger = pino(loggerOptions(config), stdout)
  let dropped = 0
  let unreported = 0
  stdout.on('drop', () => { dropped++; unreported++ })
  // 'drain': every line buffered is written, so the reader is back.
  stdout.on('drain', () => {
    if (unreported === 0) return
    const lines = unreported
    unreported = 0
    logger.warn({ dropped_lines: lines }, `${lines} log lines were dropped: stdout was not read while ${config.logBufferBytes / 1024} KiB of lines waited (TESSERA_LOG_BUFFER_KB; tessera_log_lines_dropped_total counts them)`)
  })
  return { logger, droppedLines: () => dropped }
}

/**
 * The process's warnings as `warn` lines of `logger`, one each: `warning`
 * holds its name, code, message and detail, and its stack only under
 * --trace-warnings, which asks for where warnings come from.
 */
export function logProcessWarnings (logger: Logger): void {
  onProcessWarning((warning) => {
    const { name, code, message, detail, stack } = warning
    logger.warn({ warning: { name, code, message, detail, ...(process.traceProcessWarnings ? { stack } : {}) } }, 'process warning')
  })
}

type LogArguments = Parameters<Logger['info']>

/**
 * A request's logger, whose pino child is made only when something is
 * logged at an enabled level. Fastify asks for a child logger on every
 * request, and pino's child() serializes the bindings and re-levels a new
 * object each time (about 2 µs), while at LOG_LEVEL=warn most requests log
 * nothing at all. Lines written through it are those of the child it stands
 * for: the same bindings (reqId), the same formatters and redaction.
 */
class RequestLogger {
  readonly #parent: Logger
  readonly #bindings: Bindings
  #child: Logger | undefined

  constructor (parent: Logger, bindings: Bindings) {
    this.#parent = parent
    this.#bindings = bindings
  }

  get #logger (): Logger { return (this.#child ??= this.#parent.child(this.#bindings)) }

  get level (): string { return (this.#child ?? this.#parent).level }
  set level (level: string) { this.#logger.level = level }

  isLevelEnabled (level: string): boolean { return (this.#child ?? this.#parent).isLevelEnabled(level) }
  child (bindings: Bindings, options?: ChildLoggerOptions): Logger { return this.#logger.child(bindings, options) }
  bindings (): Bindings { return this.#logger.bindings() }

  #write (level: Level, args: LogArguments): void {
    if (this.isLevelEnabled(level)) this.#logger[level](...args)
  }

  fatal (...args: LogArguments): void { this.#write('fatal', args) }
  error (...args: LogArguments): void { this.#write('error', args) }
  warn (...args: LogArguments): void { this.#write('warn', args) }
  info (...args: LogArguments): void { this.#write('info', args) }
  debug (...args: LogArguments): void { this.#write('debug', args) }
  trace (...args: LogArguments): void { this.#write('trace', args) }
  silent (): void {}
}

/** Fastify's `childLoggerFactory`: a RequestLogger standing for the child Fastify asked for. */
export function lazyChildLogger (parent: Logger, bindings: Bindings, options: Pick<ChildLoggerOptions, 'level' | 'serializers'>): Logger {
  // Options (a route's own logLevel or serializers) need the child at once; Tessera's routes set none.
  const logger = options.level === undefined && options.serializers === undefined ? new RequestLogger(parent, bindings) : parent.child(bindings, options)
  return logger as unknown as Logger
}

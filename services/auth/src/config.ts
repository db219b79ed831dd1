/**
 * Every setting Tessera reads, validated once at start. Nothing else in the
 * service reads `process.env`: the validated `Config` is passed in.
 * @module
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { availableParallelism } from 'node:os'
import { getHeapStatistics } from 'node:v8'
import { resolve } from 'node:path'
import { NAMED_ACTORS } from './audit/actors.js'
import { DEFAULT_LOG_BUFFER_BYTES } from './log-buffer.js'
import { databaseTls, DatabaseUrlError, withAbsoluteFiles } from './db/tls.js'
import { TesseraError } from './errors.js'
import { cpuBudget } from './util/cpu-budget.js'
import { memoryLimit, type MemoryLimit } from './util/memory-limit.js'
import { UUID_TEXT } from './util/uuid.js'

export type Seconds = number

export interface Config {
  port: number
  host: string
  /** A separate listener for /metrics only (then not served on `port`); undefined: /metrics on `port`. */
  metricsPort: number | undefined
  databaseUrl: string | undefined
  issuer: string
  audience: string[]
  accessTtl: Seconds
  refreshTtl: Seconds
  sessionMax: Seconds
  refreshGrace: Seconds
  jwksMaxAge: Seconds
  keyPublishLead: Seconds
  keyRotation: Seconds | null
  keyBits: 2048 | 3072 | 4096
  /** 32 raw bytes; undefined means "generate or read one in dataDir" (never in production: resolveKek refuses). */
  kek: Buffer | undefined
  signup: 'open' | 'closed'
  trustProxy: string[]
  production: boolean
  /** NODE_ENV when set to something other than production, development or test (a typo of production, perhaps): warned of at start. */
  unrecognizedNodeEnv?: string
  /** PORT when TESSERA_ISSUER is unset and the default issuer names another port (8080): warned of at start. */
  defaultIssuerElsewhere?: number
  /** In production, an issuer of plain http on a host other than loopback (RFC 8414 §2 wants https): warned of at start. */
  plainHttpIssuer?: true
  /** DATABASE_URL's sslmode=require without sslrootcert: encrypted, no certificate checked; warned of at start. */
  unverifiedDatabaseTls?: true
  dataDir: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** TESSERA_LOG_BUFFER_KB in bytes: what each process's stdout may hold unwritten before log lines are dropped (logging.ts). */
  logBufferBytes: number
  scopes: string[]
  defaultClientId: string
  /** The cores the instance may use (CPU affinity cut by the cgroup CPU quota, rounded up): `auto` workers and the default hashing concurrency. */
  cores: number
  /** What counted `cores`, for the start line. */
  coresFrom: string
  /** The cgroup memory limit the instance runs under, if any: the start warns when it is below what the workers and hashes need. */
  memoryLimit?: MemoryLimit
  /** HTTP worker processes of the instance (TESSERA_WORKERS; `auto` is one per core). */
  workers: number
  hashConcurrency: number
  hashQueueDepth: number
  /** The longest a login may wait for its hash (ms): the queue admits only what the hashing threads finish within it at the measured cost of a hash; 0: no bound in time. */
  hashMaxWaitMs: number
  /** Added to the instance's nice value for the hashing process (0 to 19): how far below the HTTP workers it runs. */
  hashNice: number
  /** The variables of HASHING_PROCESS_ENV that are set, passed on to the hashing process (passwords/hashing-engine.ts). */
  hashingProcessEnv: Readonly<Record<string, string>>
  loginBackoffThreshold: number
  loginBackoffBase: Seconds
  loginBackoffMax: Seconds
  rateLimitPerMinute: number
  loginThrottleMaxRows: number
  /** Postgres's statement_timeout on the HTTP workers' connections (ms; 0: none): a request's statement stuck longer is cancelled and rolled back, answered 503, before the 30 s the server and gateway wait for an answer. */
  dbStatementTimeoutMs: number
  /** Mean event-loop delay past which argon2 routes are shed; 0 disables. */
  maxEventLoopDelayMs: number
  /** V8 heap use past which argon2 routes are shed; 0 disables. */
  maxHeapBytes: number
  cleanupInterval: Seconds
  revokedRetention: Seconds
  auditRetention: Seconds
  /** For `tessera db roles` only: the passwords it gives the owner, runtime and notes roles. */
  dbRolePasswords: { owner: string | undefined, runtime: string | undefined, notes: string | undefined }
  keyCheckInterval: Seconds
  /** SimpleJWT's routes and claims (DESIGN: Moving from SimpleJWT). */
  simplejwtCompat: boolean
  /** Where SimpleJWT's routes live: a path without a trailing slash. */
  simplejwtPrefix: string
}

/** A bad setting: the message is the one line printed before exiting 1. */
export class ConfigError extends TesseraError {
  readonly variable: string
  readonly accepts: string
  readonly code = 'ERR_CONFIG'

  constructor (variable: string, accepts: string, value: string, message?: string) {
    super(message ?? `${variable}=${JSON.stringify(value)} is invalid: expected ${accepts}`)
    this.variable = variable
    this.accepts = accepts
  }
}

/** The suffix that makes any setting come from a file (Docker and Kubernetes secrets). */
const FILE_SUFFIX = '_FILE'

/**
 * A setting's text from NAME or from the file NAME_FILE names (one trailing
 * newline dropped), never both: two sources would leave it unclear which wins.
 * A relative NAME_FILE is from `cwd`, as TESSERA_DATA_DIR and DATABASE_URL's
 * files are, so one set of settings reads the same files wherever it is loaded.
 */
function settingText (env: Env, cwd: string, name: string): string | undefined {
  const plain = env[name] === '' ? undefined : env[name]
  const file = env[name + FILE_SUFFIX] === '' ? undefined : env[name + FILE_SUFFIX]
  if (file === undefined) return plain
  if (plain !== undefined) {
    throw new ConfigError(name, '', '', `${name} and ${name}${FILE_SUFFIX} are both set: set only one of them`)
  }
  const absolute = resolve(cwd, file)
  try {
    const text = readFileSync(absolute, 'utf8').replace(/\r?\n$/, '')
    return text === '' ? undefined : text
  } catch (err) {
    throw new ConfigError(name + FILE_SUFFIX, '', absolute, `${name}${FILE_SUFFIX}=${JSON.stringify(absolute)} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

type Env = Record<string, string | undefined>

/**
 * The environment variables the primary passes on to its hashing process:
 * how Node and the C library run, nothing of the instance's. It reads no
 * setting of Tessera (its two are arguments; UV_THREADPOOL_SIZE is set for
 * it), and the environment of a process lasts its whole life
 * (/proc/PID/environ, a core dump): a flaw in the native
 * hashing code it runs on passwords from the network must not find
 * TESSERA_KEK or DATABASE_URL there. An allow-list, so a secret added later
 * is kept out without anyone remembering this.
 * - NODE_OPTIONS: the operator's flags for every Node process (a heap limit,
 *   FIPS, a test runner's coverage hook, which then adds what it needs itself);
 *   NODE_V8_COVERAGE: Node's coverage of the process, which c8-style tools read;
 *   OPENSSL_CONF: the OpenSSL configuration Node loads (how FIPS is turned on),
 *   which the Django hashes' PBKDF2 and scrypt use.
 * - LD_LIBRARY_PATH, LD_PRELOAD: the same node binary starts as the primary
 *   did (a shared library found there, a preloaded allocator); MALLOC_ARENA_MAX,
 *   GLIBC_TUNABLES: glibc's allocator tuning, which matters most in this
 *   process, whose threads each take 19 MiB or more per argon2 hash.
 */
const HASHING_PROCESS_ENV = ['NODE_OPTIONS', 'NODE_V8_COVERAGE', 'OPENSSL_CONF', 'LD_LIBRARY_PATH', 'LD_PRELOAD', 'MALLOC_ARENA_MAX', 'GLIBC_TUNABLES']

function hashingProcessEnv (env: Env): Record<string, string> {
  const passed: Record<string, string> = {}
  for (const name of HASHING_PROCESS_ENV) {
    const value = env[name]
    if (value !== undefined) passed[name] = value
  }
  return passed
}

const DURATION = /^(\d{1,9})(s|m|h|d)?$/
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const
/**
 * The longest duration anything takes, a hundred years: a date a longer one
 * is added to can leave what JavaScript and Postgres hold (999999999d made
 * Postgres refuse a `NaN` timestamp), and no setting or grace means it.
 */
const MAX_DURATION_DAYS = 36_500
const DURATION_FORMS = `a duration such as 300, 300s, 5m, 1h or 30d, at most ${MAX_DURATION_DAYS}d`
/**
 * The longest a Node timer waits (2^31 - 1 ms, about 24.8 days): past it
 * Node fires the timer after 1 ms instead, so an interval setting above it
 * would run its job a thousand times a second.
 */
const TIMER_MAX_SECONDS = 24 * 86_400

/** Parses `300`, `300s`, `5m`, `1h`, `30d` into seconds; undefined when malformed or longer than MAX_DURATION_DAYS. */
export function parseDuration (text: string): Seconds | undefined {
  const match = DURATION.exec(text.trim())
  if (match === null) return undefined
  const unit = (match[2] ?? 's') as keyof typeof UNIT_SECONDS
  const seconds = Number(match[1]) * UNIT_SECONDS[unit]
  return seconds > MAX_DURATION_DAYS * UNIT_SECONDS.d ? undefined : seconds
}

class Reader {
  private readonly env: Env
  private readonly cwd: string

  constructor (env: Env, cwd: string) {
    this.env = env
    this.cwd = cwd
  }

  private raw (name: string): string | undefined {
    return settingText(this.env, this.cwd, name)
  }

  /** `secret`: the value may hold a password (DATABASE_URL), so a refusal never repeats it. */
  string (name: string, fallback: string, accepts: string, valid: (v: string) => boolean, secret = false): string {
    const value = this.raw(name) ?? fallback
    if (!valid(value)) throw new ConfigError(name, accepts, secret ? '<hidden>' : value)
    return value
  }

  optional (name: string): string | undefined {
    return this.raw(name)
  }

  integer (name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name)
    if (value === undefined) return fallback
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      throw new ConfigError(name, `a whole number from ${min} to ${max}`, value)
    }
    return Number(value)
  }

  /** `auto` (also when unset) or a whole number in range. */
  integerOrAuto (name: string, auto: number, min: number, max: number): number {
    const value = this.raw(name)
    if (value === undefined || value === 'auto') return auto
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      throw new ConfigError(name, `auto or a whole number from ${min} to ${max}`, value)
    }
    return Number(value)
  }

  /** `alternative` names what else the setting takes, for its message (`or off`). */
  duration (name: string, fallback: string, min: Seconds = 1, alternative?: string): Seconds {
    const value = this.raw(name) ?? fallback
    const seconds = parseDuration(value)
    if (seconds === undefined || seconds < min) {
      const expected = min > 0 ? `${DURATION_FORMS}, above 0` : `${DURATION_FORMS} (0 allowed)`
      throw new ConfigError(name, alternative === undefined ? expected : `${expected}; ${alternative}`, value)
    }
    return seconds
  }

  /** How often a job runs: a duration a Node timer can wait. */
  interval (name: string, fallback: string): Seconds {
    const value = this.raw(name) ?? fallback
    const seconds = parseDuration(value)
    if (seconds === undefined || seconds < 1 || seconds > TIMER_MAX_SECONDS) {
      throw new ConfigError(name, 'a duration such as 30, 30s, 10m or 1h, above 0 and at most 24d (the longest a Node timer waits)', value)
    }
    return seconds
  }

  choice<T extends string> (name: string, fallback: T, choices: readonly T[]): T {
    const value = this.raw(name) ?? fallback
    if (!(choices as readonly string[]).includes(value)) {
      throw new ConfigError(name, `one of ${choices.join(', ')}`, value)
    }
    return value as T
  }
}

function isHttpUrl (value: string): boolean {
  try {
    const url = new URL(value)
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === ''
  } catch {
    return false
  }
}

/** Whether a URL holds a user name or password; text that is no URL holds none. */
function hasCredentials (value: string): boolean {
  try {
    const url = new URL(value)
    return url.username !== '' || url.password !== ''
  } catch {
    return false
  }
}

/**
 * DATABASE_URL's TLS settings checked now (db/tls.ts), so a bad sslmode or
 * a CA file that cannot be read stops the start or the command with one
 * line, not at the first connection; whether it checks the server's
 * certificate. Its relative file names made absolute from `cwd`, as
 * TESSERA_DATA_DIR is: every process handed the URL reads the same files.
 */
function readDatabaseTls (databaseUrl: string | undefined, cwd: string): { databaseUrl: string | undefined, unverifiedDatabaseTls?: true } {
  if (databaseUrl === undefined) return { databaseUrl }
  try {
    const absolute = withAbsoluteFiles(databaseUrl, cwd)
    return databaseTls(absolute).verified ? { databaseUrl: absolute } : { databaseUrl: absolute, unverifiedDatabaseTls: true }
  } catch (err) {
    if (err instanceof DatabaseUrlError) throw new ConfigError('DATABASE_URL', '', '', err.message)
    throw err
  }
}

/**
 * DATABASE_URL's `port=`, which pg takes over the URL's own port (the last
 * one given; empty is none). pg handed `port=abc` or `port=99999` to the
 * socket, which threw where nothing caught it: the server and every command
 * exited 0 and printed nothing.
 */
function checkDatabasePort (databaseUrl: string | undefined): void {
  if (databaseUrl === undefined) return
  const port = new URL(databaseUrl).searchParams.getAll('port').at(-1) ?? ''
  if (port === '' || (/^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) return
  throw new ConfigError('DATABASE_URL', '', '', `DATABASE_URL's port=${JSON.stringify(port)} is invalid: expected a port number, 1 to 65535`)
}

function isPostgresUrl (value: string): boolean {
  try {
    const url = new URL(value)
    return url.protocol === 'postgres:' || url.protocol === 'postgresql:'
  } catch {
    return false
  }
}

/** An IP address, or a CIDR range with a prefix its family allows: net.isIP is strict (no `1.2.3`, no `999.1.1.1`); no IPv6 zone (`%eth0`), which the proxy matcher does not take. */
function isAddressOrRange (entry: string): boolean {
  const [address = '', prefix, ...rest] = entry.split('/')
  const family = address.includes('%') ? 0 : isIP(address)
  if (family === 0 || rest.length > 0) return false
  // No /0: it would believe every peer, and the proxy matcher refuses it.
  return prefix === undefined || (/^[0-9]{1,3}$/.test(prefix) && Number(prefix) >= 1 && Number(prefix) <= (family === 4 ? 32 : 128))
}

const isAddressList = (value: string): boolean => {
  const entries = value.split(',').map((s) => s.trim())
  return entries.some((s) => s !== '') && entries.every((s) => s === '' || isAddressOrRange(s))
}
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/
/**
 * The most characters a client's scopes may take together, spaces between
 * them included. Every token a client gets carries them when it asks for
 * none, and an access token must fit in an Authorization header: Nginx
 * refuses a header line over 8 KiB by default (large_client_header_buffers),
 * and a token is its claims in base64url (4/3 of their length) and 342
 * characters of signature besides. 1,024 leaves the rest of the claims room.
 */
const SCOPES_MAX_LENGTH = 1024
const CLIENT_ID = /^[A-Za-z0-9._-]{1,64}$/
const URL_PATH = /^(\/[A-Za-z0-9._~-]+){1,8}$/

function decodeKek (name: string, value: string): Buffer {
  const bytes = /^[A-Za-z0-9_-]{43}$/.test(value) ? Buffer.from(value, 'base64url') : Buffer.alloc(0)
  if (bytes.length !== 32) throw new ConfigError(name, 'base64url of exactly 32 bytes (43 characters)', '<hidden>')
  return bytes
}

const MAX_WORKERS = 256
/**
 * About half a second of waiting: an argon2id hash at the default parameters
 * takes ~20 ms on one core of the measured machine (97 /s on two), so 25
 * waiting per hashing slot drain in ~0.5 s. Past that a login is shed at once.
 */
const QUEUED_PER_HASHING_SLOT = 25
/**
 * Issue 12's "nothing waits longer than about half a second", on by default
 * since the queue's rate comes from the CPU cost of a hash, which a shed
 * storm cannot talk down (docs/decisions.md, "The bound in time, on by default").
 */
const DEFAULT_HASH_MAX_WAIT_MS = 500
/** Measured against 19, 5 and 0 under a login flood with and without refresh load (docs/decisions.md, "Hashing priority"). */
const DEFAULT_HASH_NICE = 10

/**
 * How long the server waits on a connection with nothing moving (Fastify's
 * connectionTimeout and requestTimeout; the gateway's proxy_read_timeout is
 * the same 30 s). A request's database work must end before it, or its
 * client is gone while the work still commits: TESSERA_DB_STATEMENT_TIMEOUT_MS
 * stays at least 5 s under it.
 */
export const ANSWER_TIMEOUT_MS = 30_000
const MAX_STATEMENT_TIMEOUT_MS = ANSWER_TIMEOUT_MS - 5_000

/**
 * The JWKS's s-maxage: how long a shared cache (the gateway) may answer from
 * its copy before asking an instance again.
 */
export const JWKS_SHARED_MAX_AGE: Seconds = 1
/** Nginx keeps cache validity in whole seconds, so it may serve a copy up to one second past its s-maxage. */
const SHARED_CACHE_STALENESS: Seconds = JWKS_SHARED_MAX_AGE + 1

/**
 * The shortest lead under which no verifier meets an unknown kid: a verifier
 * keeps a key set for max-age, the gateway's copy may be that much older, and
 * an instance that missed the NOTIFY learns of a new key only at its next
 * periodic reload. See docs/operators.md, "How long an old key set can live".
 */
export function minimumPublishLead (settings: Pick<Config, 'jwksMaxAge' | 'keyCheckInterval'>): Seconds {
  return settings.jwksMaxAge + SHARED_CACHE_STALENESS + settings.keyCheckInterval
}

/**
 * The longest JWKS max-age: its default publish lead, twice it, is then still
 * no longer than any duration Tessera takes. Past it, an unset
 * TESSERA_KEY_PUBLISH_LEAD was refused, named with a value nobody set, and
 * near MAX_DURATION_DAYS no lead at all could be set.
 */
const MAX_JWKS_MAX_AGE_DAYS = MAX_DURATION_DAYS / 2

function readJwksMaxAge (read: Reader): Seconds {
  const maxAge = read.duration('TESSERA_JWKS_MAX_AGE', '5m')
  if (maxAge > MAX_JWKS_MAX_AGE_DAYS * UNIT_SECONDS.d) {
    throw new ConfigError('TESSERA_JWKS_MAX_AGE', `a duration such as 300, 5m or 1h, above 0 and at most ${MAX_JWKS_MAX_AGE_DAYS}d (the publish lead is at least this and by default twice it, at most ${MAX_DURATION_DAYS}d)`, read.optional('TESSERA_JWKS_MAX_AGE') ?? '')
  }
  return maxAge
}

function readPublishLead (read: Reader, settings: Pick<Config, 'jwksMaxAge' | 'keyCheckInterval'>): Seconds {
  const minimum = minimumPublishLead(settings)
  // The default in seconds, not as text: spelled out, twice a long max-age is more than the nine digits a duration takes.
  if (read.optional('TESSERA_KEY_PUBLISH_LEAD') === undefined) return Math.max(2 * settings.jwksMaxAge, minimum)
  const lead = read.duration('TESSERA_KEY_PUBLISH_LEAD', '', 0)
  if (lead < minimum) {
    throw new ConfigError('TESSERA_KEY_PUBLISH_LEAD', `at least ${minimum}s: TESSERA_JWKS_MAX_AGE (${settings.jwksMaxAge}s) + ` +
      `TESSERA_KEY_CHECK_INTERVAL (${settings.keyCheckInterval}s) + ${SHARED_CACHE_STALENESS}s the gateway may keep its copy`, read.optional('TESSERA_KEY_PUBLISH_LEAD') ?? '')
  }
  return lead
}

/**
 * The longest login back-off. A block is there to slow guessing, and one past
 * a year is a lockout, which the back-off never is (passwords/login-throttle.ts).
 * Past about 68 years, the seconds to wait no longer fit the integer
 * tessera_count_login_attempt answers them in (migrations/0008), and every
 * attempt on a blocked name answered 500.
 */
const MAX_LOGIN_BACKOFF_DAYS = 365

function readBackoffMax (read: Reader): Seconds {
  const max = read.duration('TESSERA_LOGIN_BACKOFF_MAX', '15m')
  if (max > MAX_LOGIN_BACKOFF_DAYS * UNIT_SECONDS.d) {
    throw new ConfigError('TESSERA_LOGIN_BACKOFF_MAX', `a duration such as 15m, 1h or 1d, above 0 and at most ${MAX_LOGIN_BACKOFF_DAYS}d (a longer block is a lockout)`, read.optional('TESSERA_LOGIN_BACKOFF_MAX') ?? '')
  }
  return max
}

/** An http: URL whose host is not this machine's loopback, where a client's tokens would cross a network in clear. */
function isPlainHttpElsewhere (url: string): boolean {
  const { protocol, hostname } = new URL(url)
  return protocol === 'http:' && hostname !== 'localhost' && hostname !== '[::1]' && !/^127\.\d+\.\d+\.\d+$/.test(hostname)
}

/**
 * TESSERA_AUDIENCE, which may not name the issuer: refresh tokens carry
 * `aud` = the issuer, and that audience is what makes a sibling that checks
 * `iss` and `aud` but not `typ` (PyJWT, SimpleJWT's backend) refuse one as an
 * access token (RFC 8725 §3.12). An access token for the issuer would share it.
 */
function readAudience (read: Reader, issuer: string): string[] {
  const accepts = 'comma-separated audience names'
  const audience = read.string('TESSERA_AUDIENCE', 'api', accepts, (v) => /^[^\s,]+(,[^\s,]+)*$/.test(v)).split(',')
  if (audience.includes(issuer)) {
    throw new ConfigError('TESSERA_AUDIENCE', `${accepts} other than the issuer ${issuer}, which is the audience of refresh tokens`, audience.join(','))
  }
  return audience
}

/** NODE_ENV is the ecosystem's, not only Tessera's (a pipeline may set `staging`): any value runs, but one outside these is warned of. */
const KNOWN_NODE_ENVS = new Set(['production', 'development', 'test'])

const DEFAULT_PORT = 8080

/** Reads and validates every setting; throws ConfigError naming the first bad one. */
export function loadConfig (env: Env, cwd: string = process.cwd()): Config {
  const read = new Reader(env, cwd)
  // NODE_ENV alone is not read from a file: Node's libraries read it from the
  // environment. Ignored, a NODE_ENV_FILE saying production ran the instance
  // as outside it (a KEK generated on a container's disk, no warning).
  if ((env.NODE_ENV_FILE ?? '') !== '') {
    throw new ConfigError('NODE_ENV_FILE', '', '', 'NODE_ENV_FILE is not read: NODE_ENV is Node\'s and its libraries\', read from the environment alone; set NODE_ENV (production in production) and unset NODE_ENV_FILE')
  }
  const production = env.NODE_ENV === 'production'
  const jwksMaxAge = readJwksMaxAge(read)
  const keyCheckInterval = read.interval('TESSERA_KEY_CHECK_INTERVAL', '30s')
  const rotation = read.optional('TESSERA_KEY_ROTATION') === 'off' ? null : read.duration('TESSERA_KEY_ROTATION', '30d', 1, 'or off')
  const kekText = read.optional('TESSERA_KEK')
  // Not availableParallelism() alone: under a container's CPU quota it may
  // count every core of the node (docs/decisions.md, "Cores under a CPU quota").
  const budget = cpuBudget({ proc: '/proc', fallback: availableParallelism() })
  const cores = budget.cores
  const memory = memoryLimit('/proc')
  // Every core: hashing runs in its own process at a lowered OS priority,
  // so the event loops and Postgres win most of the CPU whenever they want it
  // (docs/decisions.md, "Processes of one instance").
  const hashConcurrency = read.integer('TESSERA_HASH_CONCURRENCY', cores, 1, 64)
  // A user name or password in the issuer would be in every token's iss, the
  // metadata and the "tessera is serving" line: refused, and not repeated.
  // Before the check of its shape, which quotes the value it refuses.
  const issuerSetting = read.optional('TESSERA_ISSUER')
  if (issuerSetting !== undefined && hasCredentials(issuerSetting)) {
    throw new ConfigError('TESSERA_ISSUER', 'an http(s) URL without query or fragment, with no user name or password', '<hidden>')
  }
  const issuer = read.string('TESSERA_ISSUER', `http://127.0.0.1:${DEFAULT_PORT}`, 'an http(s) URL without query or fragment', isHttpUrl)
  const port = read.integer('PORT', DEFAULT_PORT, 0, 65535)
  const audience = readAudience(read, issuer.replace(/\/+$/, ''))
  const databaseUrl = read.optional('DATABASE_URL') === undefined
    ? undefined
    // The encoding named: a generated password's # / ? or @ left as typed makes the URL none, and "a URL" alone did not say why.
    : read.string('DATABASE_URL', '', 'a postgres:// or postgresql:// URL, its user name and password percent-encoded (encodeURIComponent: # as %23, / as %2F, ? as %3F, @ as %40, : as %3A, % as %25)', isPostgresUrl, true)
  checkDatabasePort(databaseUrl)
  return {
    port,
    metricsPort: read.optional('TESSERA_METRICS_PORT') === undefined ? undefined : read.integer('TESSERA_METRICS_PORT', 0, 0, 65535),
    host: read.string('HOST', '127.0.0.1', 'an IP address or host name', (v) => /^[A-Za-z0-9.:_-]+$/.test(v)),
    ...readDatabaseTls(databaseUrl, cwd),
    issuer: issuer.replace(/\/+$/, ''),
    audience,
    accessTtl: read.duration('TESSERA_ACCESS_TTL', '5m'),
    refreshTtl: read.duration('TESSERA_REFRESH_TTL', '30d'),
    sessionMax: read.duration('TESSERA_SESSION_MAX', '90d'),
    refreshGrace: read.duration('TESSERA_REFRESH_GRACE', '10s', 0),
    jwksMaxAge,
    keyPublishLead: readPublishLead(read, { jwksMaxAge, keyCheckInterval }),
    keyRotation: rotation,
    keyBits: Number(read.choice('TESSERA_KEY_BITS', '2048', ['2048', '3072', '4096'])) as Config['keyBits'],
    kek: kekText === undefined ? undefined : decodeKek('TESSERA_KEK', kekText),
    signup: read.choice('TESSERA_SIGNUP', 'open', ['open', 'closed']),
    trustProxy: (read.optional('TESSERA_TRUST_PROXY') === undefined
      ? []
      : read.string('TESSERA_TRUST_PROXY', '', 'comma-separated IP addresses or CIDR ranges such as 10.0.0.0/8', isAddressList).split(',').map((s) => s.trim()).filter((s) => s !== '')),
    production,
    ...(env.NODE_ENV === undefined || KNOWN_NODE_ENVS.has(env.NODE_ENV) ? {} : { unrecognizedNodeEnv: env.NODE_ENV }),
    // PORT=0 (a port the system picks, as tests do) has no URL to compare.
    ...(read.optional('TESSERA_ISSUER') === undefined && port !== DEFAULT_PORT && port !== 0 ? { defaultIssuerElsewhere: port } : {}),
    ...(production && isPlainHttpElsewhere(issuer) ? { plainHttpIssuer: true } : {}),
    dataDir: resolve(cwd, read.string('TESSERA_DATA_DIR', '.data', 'a directory path', (v) => v.length > 0)),
    logLevel: read.choice('LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    logBufferBytes: read.integer('TESSERA_LOG_BUFFER_KB', DEFAULT_LOG_BUFFER_BYTES / 1024, 64, 1048576) * 1024,
    // A comma is a scope-token's character, but "read,write" is one scope only by mistake: refused, as `clients create --scopes` refuses it.
    scopes: read.string('TESSERA_SCOPES', 'read write', `space-separated scope names (RFC 6749 §3.3), no commas, at most ${SCOPES_MAX_LENGTH} characters in all`, (v) => v.trim().split(/ +/).every((s) => SCOPE_TOKEN.test(s) && !s.includes(',')) && v.trim().length <= SCOPES_MAX_LENGTH).trim().split(/ +/),
    // The rules of every client id (clients/register.ts), checked here so the first start's registration cannot refuse it naming no setting.
    defaultClientId: read.string('TESSERA_DEFAULT_CLIENT_ID', 'tessera', `1 to 64 of A-Z a-z 0-9 . _ -, not shaped like a UUID, and not ${[...NAMED_ACTORS].join(', ').replace(/, (?=[^,]*$)/, ' or ')} (the audit trail's own actors)`,
      (v) => CLIENT_ID.test(v) && !UUID_TEXT.test(v) && !NAMED_ACTORS.has(v.toLowerCase())),
    cores,
    coresFrom: budget.from,
    ...(memory === undefined ? {} : { memoryLimit: memory }),
    workers: read.integerOrAuto('TESSERA_WORKERS', cores, 1, MAX_WORKERS),
    hashConcurrency,
    hashQueueDepth: read.integer('TESSERA_HASH_QUEUE_DEPTH', hashConcurrency * QUEUED_PER_HASHING_SLOT, 0, 100000),
    hashMaxWaitMs: read.integer('TESSERA_HASH_MAX_WAIT_MS', DEFAULT_HASH_MAX_WAIT_MS, 0, 60000),
    hashNice: read.integer('TESSERA_HASH_NICE', DEFAULT_HASH_NICE, 0, 19),
    hashingProcessEnv: hashingProcessEnv(env),
    loginBackoffThreshold: read.integer('TESSERA_LOGIN_BACKOFF_AFTER', 5, 1, 1000),
    loginBackoffBase: read.duration('TESSERA_LOGIN_BACKOFF_BASE', '1s'),
    loginBackoffMax: readBackoffMax(read),
    rateLimitPerMinute: read.integer('TESSERA_RATE_LIMIT', 300, 1, 1000000),
    loginThrottleMaxRows: read.integer('TESSERA_LOGIN_THROTTLE_MAX_ROWS', 100000, 100, 100000000),
    dbStatementTimeoutMs: read.integer('TESSERA_DB_STATEMENT_TIMEOUT_MS', 10000, 0, MAX_STATEMENT_TIMEOUT_MS),
    maxEventLoopDelayMs: read.integer('TESSERA_MAX_EVENT_LOOP_DELAY_MS', 1000, 0, 60000),
    // 90 % of V8's heap limit: shed logins before the process dies of an OOM.
    maxHeapBytes: read.integer('TESSERA_MAX_HEAP_MB', Math.floor(getHeapStatistics().heap_size_limit * 0.9 / 2 ** 20), 0, 1048576) * 2 ** 20,
    cleanupInterval: read.interval('TESSERA_CLEANUP_INTERVAL', '10m'),
    revokedRetention: read.duration('TESSERA_REVOKED_RETENTION', '7d', 0),
    auditRetention: read.duration('TESSERA_AUDIT_RETENTION', '90d'),
    dbRolePasswords: {
      owner: read.optional('TESSERA_DB_OWNER_PASSWORD'),
      runtime: read.optional('TESSERA_DB_APP_PASSWORD'),
      notes: read.optional('TESSERA_DB_NOTES_PASSWORD')
    },
    keyCheckInterval,
    simplejwtCompat: read.choice('TESSERA_SIMPLEJWT_COMPAT', 'off', ['off', 'on']) === 'on',
    simplejwtPrefix: read.string('TESSERA_SIMPLEJWT_PREFIX', '/api/token', 'a path such as /api/token (segments of A-Z a-z 0-9 . _ ~ -, no trailing slash)', (v) => URL_PATH.test(v))
  }
}

export const CLIENT_ID_PATTERN = CLIENT_ID
/** RFC 6749 §3.3's scope-token. */
export const SCOPE_TOKEN_PATTERN = SCOPE_TOKEN
export { SCOPES_MAX_LENGTH }

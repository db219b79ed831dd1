/**
 * Every setting notes reads, validated once at start; nothing else reads
 * process.env. A bad value stops the process with one line naming it.
 * @module
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'

export interface Config {
  port: number
  host: string
  databaseUrl: string
  /** Expected `iss`; also the base of the default JWKS URL. */
  issuer: string
  jwksUrl: string
  audience: string
  /** How long a fetched key set is used before the JWKS is asked again; also the most a known key is trusted while the JWKS cannot be fetched. */
  jwksTtlMs: number
  /** At most one JWKS fetch per this for unknown kids, and none for this long after a failed fetch. */
  jwksCooldownMs: number
  /** Leeway for `exp`/`iat`/`nbf` against clock skew between hosts. */
  clockSkewMs: number
  logLevel: LogLevel
  /** NOTES_TRUST_PROXY: the addresses and CIDR ranges of the gateway, whose X-Request-Id becomes the request's id; empty: none. */
  trustProxy: string[]
  /** NOTES_LOG_BUFFER_KB in bytes: what stdout may hold unwritten before log lines are dropped (logging.ts). */
  logBufferBytes: number
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
type LogLevel = typeof LOG_LEVELS[number]

type Env = Record<string, string | undefined>

export class ConfigError extends Error {}

/** NAME, or the contents of the file NAME_FILE names (Docker secrets); never both. */
function get (env: Env, name: string): string | undefined {
  const value = env[name] === '' ? undefined : env[name]
  const file = env[`${name}_FILE`] === '' ? undefined : env[`${name}_FILE`]
  if (file === undefined) return value
  if (value !== undefined) throw new ConfigError(`${name} and ${name}_FILE are both set: set only one of them`)
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '')
  } catch (err) {
    throw new ConfigError(`${name}_FILE=${JSON.stringify(file)} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

const CREDENTIALS_ENCODED = 'its user name and password percent-encoded (encodeURIComponent: # as %23, / as %2F, ? as %3F, @ as %40, : as %3A, % as %25)'

/** `secret`: the value may hold a password (DATABASE_URL: one with an unescaped "/" is not a URL), so a refusal never repeats it, as Tessera's config does. */
function parsedUrl (name: string, value: string, secret = false): URL {
  try {
    return new URL(value)
  } catch {
    // A secret URL's usual fault is a password's # / ? or @ left as typed: the encoding is named, as Tessera's config names it.
    throw new ConfigError(`${name}=${secret ? '<hidden>' : JSON.stringify(value)} is invalid: expected a URL${secret ? `, ${CREDENTIALS_ENCODED}` : ''}`)
  }
}

function url (env: Env, name: string, fallback: string | undefined, secret = false): string {
  const value = get(env, name) ?? fallback
  if (value === undefined) throw new ConfigError(`${name} is required`)
  return parsedUrl(name, value, secret).toString().replace(/\/+$/, '')
}

/**
 * An http(s) URL, or the start stops here: another scheme (file:, or a bare
 * host:port, which parses as a scheme of its own) passed, and every request
 * was then a 503 (no fetch of it succeeds) or a 401 (no token carries it).
 */
function httpUrl (name: string, value: string, rule: string, queryAllowed: boolean): void {
  const parsed = parsedUrl(name, value)
  // A user name or password in it: fetch() refuses such a URL, so every
  // JWKS fetch failed, and "notes is serving" logged the password. Not
  // repeated here either, so checked before the rest, whose refusal quotes
  // the value.
  if (parsed.username !== '' || parsed.password !== '') {
    throw new ConfigError(`${name}=<hidden> is invalid: expected ${rule}, with no user name or password (fetch refuses a URL holding credentials)`)
  }
  if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || (!queryAllowed && /[?#]/.test(value))) {
    throw new ConfigError(`${name}=${JSON.stringify(value)} is invalid: expected ${rule}`)
  }
}

function integer (env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = get(env, name)
  if (value === undefined) return fallback
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(`${name}=${JSON.stringify(value)} is invalid: expected a whole number from ${min} to ${max}`)
  }
  return Number(value)
}

/** pino's levels, as Tessera takes them: pino would throw its own error at start for anything else. */
function logLevel (env: Env): LogLevel {
  const value = get(env, 'LOG_LEVEL') ?? 'info'
  const level = LOG_LEVELS.find((l) => l === value)
  if (level === undefined) throw new ConfigError(`LOG_LEVEL=${JSON.stringify(value)} is invalid: expected one of ${LOG_LEVELS.join(', ')}`)
  return level
}

/**
 * The issuer as Tessera writes it into `iss`: checked to be a URL, but only
 * its trailing slashes dropped, as Tessera drops them. A URL's own spelling
 * (a host in capitals, an explicit :443) would differ from every token's `iss`.
 */
function issuerUrl (env: Env): string {
  const value = get(env, 'NOTES_ISSUER') ?? 'http://127.0.0.1:8080'
  // As Tessera takes TESSERA_ISSUER: no query or fragment, which no iss carries.
  httpUrl('NOTES_ISSUER', value, 'an http(s) URL without query or fragment', false)
  return value.replace(/\/+$/, '')
}

function jwksUrl (env: Env, issuer: string): string {
  const value = get(env, 'NOTES_JWKS_URL') ?? `${issuer}/.well-known/jwks.json`
  httpUrl('NOTES_JWKS_URL', value, 'an http(s) URL', true)
  return new URL(value).toString().replace(/\/+$/, '')
}

/** A setting whose value must match `pattern`; `expected` says what it takes. */
function matching (env: Env, name: string, fallback: string, pattern: RegExp, expected: string): string {
  const value = get(env, name) ?? fallback
  if (!pattern.test(value)) throw new ConfigError(`${name}=${JSON.stringify(value)} is invalid: expected ${expected}`)
  return value
}

/** As Tessera checks its HOST: one that no lookup could resolve fails here, named, not at listen. */
function host (env: Env): string {
  return matching(env, 'HOST', '127.0.0.1', /^[A-Za-z0-9.:_-]+$/, 'an IP address or host name')
}

/**
 * Notes is a registered resource of its own (RFC 8707): tokens for other APIs
 * are refused. A blank audience (an empty NOTES_AUDIENCE_FILE) stops the start:
 * fast-jwt checks `aud` only when given a non-empty one, so every token of
 * the issuer, whatever API it was for, was accepted. As Tessera's
 * TESSERA_AUDIENCE, no whitespace (no token's aud would match) and no comma.
 */
function audience (env: Env): string {
  return matching(env, 'NOTES_AUDIENCE', 'urn:tessera:notes', /^[^\s,]+$/, 'one audience, without spaces or commas (the resource tokens for notes name in aud)')
}

/**
 * After a failed fetch notes tries none for the cooldown, and a copy older
 * than the TTL verifies nothing: a cooldown longer than the TTL (up to a day
 * was accepted) made one failed fetch a 503 for every token until it ended.
 * So at most the TTL; by default 30 s, or the TTL when that is shorter.
 */
function jwksCooldown (env: Env, ttl: number): number {
  const value = integer(env, 'NOTES_JWKS_COOLDOWN', Math.min(30, ttl), 1, 300)
  if (value > ttl) {
    throw new ConfigError(`NOTES_JWKS_COOLDOWN=${JSON.stringify(get(env, 'NOTES_JWKS_COOLDOWN'))} is invalid: expected at most NOTES_JWKS_TTL (${ttl}): after a failed fetch none is tried for the cooldown, and a JWKS older than NOTES_JWKS_TTL verifies no token`)
  }
  return value
}

/**
 * An IP address, or a CIDR range with a prefix its family allows, as
 * Tessera's config takes TESSERA_TRUST_PROXY: no IPv6 zone (`%eth0`), and no
 * /0, which would believe every peer.
 */
function isAddressOrRange (entry: string): boolean {
  const [address = '', prefix, ...rest] = entry.split('/')
  const family = address.includes('%') ? 0 : isIP(address)
  if (family === 0 || rest.length > 0) return false
  return prefix === undefined || (/^[0-9]{1,3}$/.test(prefix) && Number(prefix) >= 1 && Number(prefix) <= (family === 4 ? 32 : 128))
}

/** NOTES_TRUST_PROXY, in TESSERA_TRUST_PROXY's syntax and words: comma-separated, empty entries skipped, at least one. */
function trustProxy (env: Env): string[] {
  const value = get(env, 'NOTES_TRUST_PROXY')
  if (value === undefined) return []
  const entries = value.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (entries.length === 0 || !entries.every(isAddressOrRange)) {
    throw new ConfigError(`NOTES_TRUST_PROXY=${JSON.stringify(value)} is invalid: expected comma-separated IP addresses or CIDR ranges such as 10.0.0.0/8`)
  }
  return entries
}

export function loadConfig (env: Env): Config {
  const issuer = issuerUrl(env)
  // At most the JWKS's max-age as Tessera serves it by default
  // (TESSERA_JWKS_MAX_AGE, 5m): a copy kept longer trusts a revoked key that
  // much longer, and may lack a key Tessera's publish lead assumes every
  // verifier has by then. Less is always safe: one more fetch.
  const jwksTtl = integer(env, 'NOTES_JWKS_TTL', 300, 1, 300)
  return {
    port: integer(env, 'PORT', 8201, 0, 65535),
    host: host(env),
    databaseUrl: url(env, 'DATABASE_URL', undefined, true),
    issuer,
    jwksUrl: jwksUrl(env, issuer),
    audience: audience(env),
    jwksTtlMs: jwksTtl * 1000,
    jwksCooldownMs: jwksCooldown(env, jwksTtl) * 1000,
    // At most the 60 s Tessera keeps a key published past the last token it
    // signed could expire: more would accept tokens long expired, and only
    // until their key leaves the JWKS (docs/integrators.md#clock-skew).
    clockSkewMs: integer(env, 'NOTES_CLOCK_SKEW', 30, 0, 60) * 1000,
    logLevel: logLevel(env),
    trustProxy: trustProxy(env),
    // Tessera's TESSERA_LOG_BUFFER_KB under a NOTES_ name, as notes' own
    // settings are named: 4 MiB absorbs a reader's hiccup (a log rotation, a
    // shipper's restart), and 64 KiB is the least (docs/decisions.md, "A
    // stalled log reader").
    logBufferBytes: integer(env, 'NOTES_LOG_BUFFER_KB', 4096, 64, 1048576) * 1024
  }
}

/**
 * Tessera's errors: one base, TesseraError, whose `code` names the kind of
 * failure (jose's util/errors.ts is the model), so a log line, a test or a
 * caller tells them apart without a chain of `instanceof`. The HTTP ones are
 * here; the others sit beside the code that throws them (ConfigError in
 * config.ts, CliError in cli/output.ts, the key errors in keys/).
 *
 * Domain code throws OAuthError and ProblemError; the one error handler
 * (http/errors.ts) turns them into RFC 6749 §5.2 bodies (OAuth endpoints) or
 * RFC 9457 problem+json (everything else). In every error `detail` means the
 * same: the real reason, written to the log, never sent. What the client
 * reads is `description` (OAuthError) or `publicDetail` (ProblemError).
 * @module
 */

export type TesseraErrorCode =
  | 'ERR_OAUTH'
  | 'ERR_REFRESH_REUSE'
  | 'ERR_SESSION_ENDED'
  | 'ERR_PROBLEM'
  | 'ERR_INVALID_TOKEN'
  | 'ERR_DRF'
  | 'ERR_CONFIG'
  | 'ERR_CLI'
  | 'ERR_WRONG_KEK'
  | 'ERR_SAME_KEK'
  | 'ERR_UNKNOWN_KEY'
  | 'ERR_CLIENT_RULE'
  | 'ERR_IMPORT_FILE'
  | 'ERR_IMPORT_INTERRUPTED'
  | 'ERR_ROLE_NAME'
  | 'ERR_STARTUP'
  | 'ERR_SCHEMA_NEWER'
  | 'ERR_SCHEMA_ELSEWHERE'
  | 'ERR_SCHEMA_OUT_OF_REACH'
  | 'ERR_MIGRATION_GAVE_WAY'
  | 'ERR_REMOTE_OVERLOADED'
  | 'ERR_PEER_GONE'
  | 'ERR_DATABASE_URL'
  | 'ERR_DATABASE_TLS_FILE'

export abstract class TesseraError extends Error {
  abstract readonly code: TesseraErrorCode

  /**
   * `stack: false` for a refusal answered to a client (OAuthError,
   * ProblemError, DrfError): http/errors.ts logs its code and detail, never
   * its stack, and capturing one was a tenth of a worker's CPU while it shed
   * a login flood (docs/performance.md, "At 64 connections"). Its `cause` keeps its own.
   */
  constructor (message: string, options: { cause?: unknown, stack?: boolean } = {}) {
    const limit = Error.stackTraceLimit
    if (options.stack === false) Error.stackTraceLimit = 0
    try {
      super(message, { cause: options.cause })
    } finally {
      Error.stackTraceLimit = limit
    }
    this.name = new.target.name
  }
}

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'invalid_scope'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_target'
  | 'temporarily_unavailable'
  | 'server_error'

const OAUTH_STATUS: Record<OAuthErrorCode, number> = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  invalid_scope: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_target: 400,
  temporarily_unavailable: 503,
  server_error: 500
}

interface ErrorOptions {
  /** Logged, never sent. */
  detail?: string
  cause?: unknown
  /** Seconds; sent as Retry-After. */
  retryAfter?: number
  status?: number
  /** Sent as WWW-Authenticate (a failed HTTP Basic client authentication, RFC 6749 §5.2). */
  challenge?: string
}

export class OAuthError extends TesseraError {
  readonly error: OAuthErrorCode
  readonly description: string
  readonly code: TesseraErrorCode = 'ERR_OAUTH'
  readonly status: number
  readonly detail: string | undefined
  readonly retryAfter: number | undefined
  readonly challenge: string | undefined

  /** `error` is RFC 6749 §5.2's member name; `description` is sent as `error_description`. */
  constructor (error: OAuthErrorCode, description: string, options: ErrorOptions = {}) {
    super(description, { cause: options.cause, stack: false })
    this.error = error
    this.description = description
    this.status = options.status ?? OAUTH_STATUS[error]
    this.detail = options.detail
    this.retryAfter = options.retryAfter
    this.challenge = options.challenge
  }
}

/** The one answer for wrong password, unknown user and disabled user alike. */
export function invalidCredentials (detail: string): OAuthError {
  return new OAuthError('invalid_grant', 'the username or password is incorrect', { detail })
}

/**
 * A used refresh token presented after the grace window: its session has just
 * been ended. `byAnotherClient`: presented by a client other than the
 * session's, which is answered as any token of another client is, so nothing
 * tells the presenter the token was a real one, spent.
 */
export class RefreshReuseError extends OAuthError {
  readonly byAnotherClient: boolean
  override readonly code = 'ERR_REFRESH_REUSE'

  constructor (byAnotherClient = false) {
    super('invalid_grant', 'the refresh token is invalid, expired or revoked', { detail: byAnotherClient ? 'refresh token reuse by another client' : 'refresh token reuse' })
    this.byAnotherClient = byAnotherClient
  }
}

/** A refresh token of a session that has already ended (logout, revocation, reuse): the same answer as any refused token, told apart for SimpleJWT's "blacklisted". */
export class SessionEndedError extends OAuthError {
  override readonly code = 'ERR_SESSION_ENDED'

  constructor () {
    super('invalid_grant', 'the refresh token is invalid, expired or revoked', { detail: 'session revoked' })
  }
}

export class ProblemError extends TesseraError {
  readonly status: number
  readonly title: string
  readonly code: TesseraErrorCode = 'ERR_PROBLEM'
  /** Sent as the problem's `detail` member. */
  readonly publicDetail: string | undefined
  readonly detail: string | undefined
  readonly retryAfter: number | undefined
  readonly type: string

  constructor (status: number, title: string, options: ErrorOptions & { publicDetail?: string, type?: string } = {}) {
    super(title, { cause: options.cause, stack: false })
    this.status = status
    this.title = title
    this.publicDetail = options.publicDetail
    this.detail = options.detail
    this.retryAfter = options.retryAfter
    this.type = options.type ?? 'about:blank'
  }
}

/** A Bearer token that is missing, malformed, expired or not ours (RFC 6750 §3.1). */
export class InvalidTokenError extends ProblemError {
  readonly reason: string
  override readonly code = 'ERR_INVALID_TOKEN'

  constructor (reason: string) {
    super(401, 'Unauthorized', { publicDetail: 'the access token is missing, invalid or expired' })
    this.reason = reason
  }
}

/**
 * A refusal in Django REST framework's shape, for SimpleJWT's routes:
 * `{"detail", "code"}` or `{"<field>": ["<message>"]}` (DESIGN: Moving from SimpleJWT).
 */
export class DrfError extends TesseraError {
  readonly status: number
  readonly body: Record<string, string | string[]>
  readonly code = 'ERR_DRF'
  readonly detail: string | undefined

  constructor (status: number, body: Record<string, string | string[]>, options: Pick<ErrorOptions, 'detail' | 'cause'> = {}) {
    super(`DRF ${status}`, { cause: options.cause, stack: false })
    this.status = status
    this.body = body
    this.detail = options.detail
  }
}

/** Out of reach: the connection could not be made, was lost, or the server is shutting down, starting up, or full of connections. */
const OUT_OF_REACH_CODES = new Set([
  // Node, connecting or connected (Tessera looks up no host name but the database's: ENOTFOUND is its)
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND',
  // Postgres: connection exceptions (class 08), shutdown and start-up (57P0x), too many connections
  '08000', '08001', '08003', '08004', '08006', '57P01', '57P02', '57P03', '53300'
])
/**
 * Reached, and refused for a moment, the statement and its transaction rolled
 * back: out of resources (the rest of class 53: disk full, out of memory, a
 * configured limit), a deadlock or a serialization conflict (class 40: run
 * again, it goes through), a statement cancelled (statement_timeout, or an
 * operator's pg_cancel_backend), a server that takes no writes (a standby
 * after a failover, or read-only for maintenance). What Postgres said is the
 * whole story: a command prints it without "cannot reach".
 */
const REACHED_CODES = new Set(['53000', '53100', '53200', '53400', '40001', '40P01', '57014', '25006'])

/**
 * How PgBouncer ends a connection it will not serve: FATAL with 08P01
 * (protocol_violation) whatever the reason: max_client_conn reached, or
 * server_login_retry after Postgres refused it or was down (both seen with
 * PgBouncer 1.18). Out of reach as the 08 codes above are. Only FATAL:
 * an ERROR with 08P01 is Postgres refusing a message on a connection that
 * goes on ("bind message supplies 1 parameters, but prepared statement …
 * requires 2"), a fault.
 */
const POOLER_REFUSAL = '08P01'

const UNAVAILABLE_MESSAGES = new Set([
  'timeout exceeded when trying to connect',
  'Connection terminated due to connection timeout',
  'Connection terminated unexpectedly'
])

/**
 * Postgres, reached, refusing who connects or to what: a wrong password (an
 * operator rotated it), a role pg_hba.conf refuses or that may not log in,
 * an unknown role or database. Only a new connection meets one: under a
 * running instance, every request whose pool opens one is refused the same.
 */
const CONNECTION_REFUSED_CODES = new Set(['28P01', '28000', '3D000'])

/**
 * The TLS handshake with Postgres refusing the server's certificate (DATABASE_URL's
 * sslmode verify-ca or verify-full, or require with sslrootcert: db/tls.ts):
 * OpenSSL's verification codes as Node reports them. Signed by no CA
 * DATABASE_URL trusts:
 */
const UNTRUSTED_CERTIFICATE_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_SIGNATURE_FAILURE', 'INVALID_CA', 'INVALID_PURPOSE', 'PATH_LENGTH_EXCEEDED'
])
/** Trusted, and refused for another reason: out of its dates, revoked. */
const INVALID_CERTIFICATE_CODES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_REVOKED'])
/**
 * DATABASE_URL's CRLs (sslcrl, sslcrldir: db/tls.ts) unable to say whether a
 * certificate of the chain is revoked: OpenSSL, as under libpq, wants a
 * current CRL from every CA of the chain once it is given one.
 */
const CRL_CODES = new Set([
  'UNABLE_TO_GET_CRL', 'UNABLE_TO_GET_CRL_ISSUER', 'CRL_HAS_EXPIRED', 'CRL_NOT_YET_VALID', 'CRL_SIGNATURE_FAILURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE', 'ERROR_IN_CRL_LAST_UPDATE_FIELD', 'ERROR_IN_CRL_NEXT_UPDATE_FIELD', 'KEYUSAGE_NO_CRL_SIGN'
])
/** Node's: trusted, and naming another host than DATABASE_URL's (sslmode=verify-full). */
const HOST_NOT_IN_CERTIFICATE = 'ERR_TLS_CERT_ALTNAME_INVALID'
/**
 * pg's words when the server answers its request for TLS with no: Postgres
 * with ssl = off (and the byte pg did not expect there, its other refusal).
 */
const NO_TLS_MESSAGES = new Set(['The server does not support SSL connections', 'There was an error establishing an SSL connection'])
/** pg_hba.conf's refusal of a connection without TLS where only hostssl lines would admit it: Postgres ends its message so. */
const TLS_ONLY_REFUSAL = /, no encryption$/

/** sslkey's key is not the one of sslcert's certificate. */
const KEY_MISMATCH = 'ERR_OSSL_X509_KEY_VALUES_MISMATCH'

/**
 * db/tls.ts's DatabaseTlsFileError (not imported: tls.ts imports this
 * module): a TLS file of DATABASE_URL's that a new connection could not read
 * as the start did. Its message is the start's line naming the file.
 */
const TLS_FILE_UNREADABLE = 'ERR_DATABASE_TLS_FILE'

/**
 * A new connection to Postgres that TLS did not let through, as one line
 * saying which of DATABASE_URL's settings to look at: the refused
 * certificate's code and Node's words are in it, or the file that could
 * not be read. Undefined for anything else.
 */
function tlsRefusal (err: Error, code: unknown): string | undefined {
  if (code === TLS_FILE_UNREADABLE) return err.message
  const why = `(${String(code)}: ${err.message})`
  if (typeof code === 'string' && UNTRUSTED_CERTIFICATE_CODES.has(code)) {
    return `cannot connect to the database over TLS: its certificate is not signed by a CA that DATABASE_URL trusts (its sslrootcert; without one, Node's public CAs) ${why}`
  }
  if (typeof code === 'string' && INVALID_CERTIFICATE_CODES.has(code)) return `cannot connect to the database over TLS: its certificate was refused ${why}`
  if (typeof code === 'string' && CRL_CODES.has(code)) {
    return `cannot connect to the database over TLS: DATABASE_URL's CRLs (sslcrl, sslcrldir) cannot tell whether its certificate is revoked ${why}; give a current CRL of every CA in its chain`
  }
  if (code === HOST_NOT_IN_CERTIFICATE) {
    return `cannot connect to the database over TLS: its certificate does not name the host DATABASE_URL connects to ${why}; connect by a name it holds, or use sslmode=verify-ca`
  }
  if (NO_TLS_MESSAGES.has(err.message)) {
    return `cannot connect to the database over TLS: ${err.message} (its ssl is off), and DATABASE_URL's sslmode requires TLS`
  }
  if (typeof code === 'string' && code.startsWith('ERR_SSL_')) return `cannot connect to the database over TLS: the handshake failed ${why}`
  // Node's, making the connection's TLS context: a certificate and key caught mid-rotation, one file replaced and not yet the other.
  if (code === KEY_MISMATCH) return `cannot connect to the database over TLS: DATABASE_URL's sslcert and sslkey are not a pair ${why}`
  return undefined
}

/**
 * An error as a log line's fields: a database out of reach by its code and
 * message alone, since an outage repeats the line at every retry of every
 * job and its stack is only pg's internals; any other error whole, stack
 * included, since that is where a fault is found.
 */
export function loggedError (err: unknown): { err: unknown } | { db_error: { code: unknown, message: string } } {
  return isDatabaseUnavailable(err) ? { db_error: { code: (err as Error & { code?: unknown }).code, message: (err as Error).message } } : { err }
}

/** The one line a start-up or a command prints when it could not reach its database; undefined for any other error. */
export function databaseUnreachable (err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined
  const { code } = err as Error & { code?: unknown }
  if (typeof code === 'string' && REACHED_CODES.has(code)) return undefined
  const tls = tlsRefusal(err, code)
  if (tls !== undefined) return tls
  if (code === '28000' && TLS_ONLY_REFUSAL.test(err.message)) {
    return `the database refused the connection: ${err.message}; it takes this connection only over TLS: set sslmode in DATABASE_URL (docs/operators.md, "Postgres over TLS")`
  }
  if (typeof code === 'string' && CONNECTION_REFUSED_CODES.has(code)) return `the database refused the connection: ${err.message}`
  return isDatabaseUnavailable(err) ? `cannot reach the database: ${err.message}` : undefined
}

/**
 * Postgres out of reach for a moment: pg-pool's acquire timeout (every
 * connection busy, e.g. during a login flood), a connection that could not
 * be made (a stopped server leaves no socket file behind, ENOENT, or nothing
 * listening on its port, or its host name no longer resolves, ENOTFOUND),
 * one Postgres refused (CONNECTION_REFUSED_CODES: until the operator
 * restarts the instance with the new password, a 503, not a 500 with a
 * stack per request), one TLS refused (tlsRefusal: a server certificate
 * replaced by one DATABASE_URL does not trust, ssl turned off, a TLS file of
 * DATABASE_URL's unreadable since the start), one a pooler in front refused (POOLER_REFUSAL),
 * one lost mid-query, a statement past TESSERA_DB_STATEMENT_TIMEOUT_MS, the
 * server shutting down, starting up,
 * full or out of disk or memory, a deadlock it broke by rolling one
 * transaction back, or taking no writes (read-only). The request can be
 * retried: mostly it did nothing, and a refresh whose commit went through
 * just as its connection was lost is answered again within the grace window.
 * So the answer is 503 with Retry-After, not a 500.
 */
export function isDatabaseUnavailable (err: unknown): boolean {
  if (!(err instanceof Error)) return false
  const { code, syscall, severity } = err as Error & { code?: unknown, syscall?: unknown, severity?: unknown }
  if (UNAVAILABLE_MESSAGES.has(err.message)) return true
  if (tlsRefusal(err, code) !== undefined) return true
  if (typeof code !== 'string') return false
  if (code === POOLER_REFUSAL && severity === 'FATAL') return true
  if (OUT_OF_REACH_CODES.has(code) || REACHED_CODES.has(code) || CONNECTION_REFUSED_CODES.has(code)) return true
  // A Unix socket path that does not exist: only when connecting, so a missing file elsewhere stays a fault.
  return code === 'ENOENT' && syscall === 'connect'
}

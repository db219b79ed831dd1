/**
 * DATABASE_URL's connection parameters, read by Tessera with libpq's
 * meanings (psql, pg_dump, every provider's documentation), not
 * node-postgres's. The TLS ones first: node-postgres 8 takes sslmode=require,
 * prefer and verify-ca as verify-full and prints a multi-line SECURITY
 * WARNING on stderr saying version 9 will switch to libpq's; read here, a URL
 * means one thing whichever pg is installed, and pg never sees them (no
 * warning). The connection string pg is handed has every parameter read here
 * taken out, and `ssl` and `sslnegotiation` are always set, so pg's own
 * PGSSLMODE and PGSSLNEGOTIATION are not read either: DATABASE_URL alone says.
 *
 * pg ignores a parameter it does not know, where libpq refuses it: a URL
 * copied from a provider's page could promise a protection (sslcrl,
 * channel_binding=require, target_session_attrs) that was not there. So
 * every parameter libpq knows (PostgreSQL 18) is either honoured with its
 * meaning or refused at start with one line saying what to do, and one
 * neither knows is refused too. docs/decisions.md, "Postgres over TLS" and
 * "Every DATABASE_URL parameter honoured or refused"; the table is
 * operators.md's.
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'
import { createPrivateKey } from 'node:crypto'
import path from 'node:path'
import { createSecureContext, getCACertificates, type ConnectionOptions, type SecureVersion } from 'node:tls'
import pg from 'pg'
import { TesseraError } from '../errors.js'

/** The sslmode values Tessera takes; unset is disable. */
export type SslMode = 'disable' | 'require' | 'verify-ca' | 'verify-full'
const SSL_MODES: readonly string[] = ['disable', 'require', 'verify-ca', 'verify-full']

/** What a connection made with these settings checks of the server. */
export interface DatabaseTls {
  mode: SslMode
  /** require without sslrootcert: encrypted, but any certificate is taken. */
  verified: boolean
}

/**
 * What pg is handed: spread into a pg.Pool's or a pg.Client's options. A
 * caller's own default connection timeout goes before the spread, so that
 * DATABASE_URL's connect_timeout wins.
 */
export interface PostgresClientConfig {
  /** DATABASE_URL without the parameters read here. */
  connectionString: string
  ssl: false | ConnectionOptions
  /** Set, so that pg reads no PGSSLNEGOTIATION: its `direct` is refused by Postgres before 17, and without TLS refused by pg. */
  sslnegotiation: 'postgres'
  /** channel_binding=prefer: SCRAM-SHA-256-PLUS where the server offers it. */
  enableChannelBinding: boolean
  /** keepalives: on unless `keepalives=0`, libpq's default (pg's is off). */
  keepAlive: boolean
  /** keepalives_idle, in milliseconds; unset, the system's. */
  keepAliveInitialDelayMillis?: number
  /** connect_timeout, in milliseconds; unset when DATABASE_URL has none. */
  connectionTimeoutMillis?: number
  /**
   * DATABASE_URL's application_name, as an option rather than in the URL,
   * where pg would let it win over a caller's own (the LISTEN connection's
   * `tessera-listener`, which pg_stat_activity is searched by).
   */
  application_name?: string
}

/** DATABASE_URL's settings cannot be used: the message is one line that names no password. */
export class DatabaseUrlError extends TesseraError {
  readonly code = 'ERR_DATABASE_URL'
}

/**
 * A file of DATABASE_URL's (sslrootcert, sslcert, sslkey, sslcrl, sslcrldir)
 * that a new connection could not read, or that no longer passes the
 * start's checks: that connection fails, as under libpq. The message
 * is the start's own line, naming the parameter and the file, never the
 * key or sslpassword.
 */
export class DatabaseTlsFileError extends TesseraError {
  readonly code = 'ERR_DATABASE_TLS_FILE'
}

/** Read here with libpq's meanings, and taken out of what pg parses. */
const READ_HERE = [
  'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslpassword', 'sslcrl', 'sslcrldir', 'sslnegotiation', 'sslsni',
  'sslcompression', 'sslcertmode', 'ssl_min_protocol_version', 'ssl_max_protocol_version', 'channel_binding', 'gssencmode',
  'connect_timeout', 'keepalives', 'keepalives_idle', 'client_encoding', 'target_session_attrs', 'load_balance_hosts',
  'min_protocol_version', 'max_protocol_version', 'application_name'
]

/**
 * Handed to pg, which reads them as libpq does: where to connect, as whom,
 * and the session's `options` and `fallback_application_name`. The last four are
 * node-postgres's own (libpq sets them through `options`), kept since pg
 * honours them.
 */
const PASSED_TO_PG = [
  'host', 'port', 'user', 'password', 'options', 'fallback_application_name',
  'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'query_timeout'
]

/** Parameters that need a certificate check or a TLS connection: given without sslmode, libpq would prefer TLS and pg made it verified; neither is said. */
const NEED_SSLMODE = ['sslrootcert', 'sslcert', 'sslkey', 'sslpassword', 'sslcrl', 'sslcrldir', 'ssl_min_protocol_version', 'ssl_max_protocol_version']

/**
 * Parameters that cannot be honoured whatever their value, each refused
 * saying what to do. libpq's (PostgreSQL 18) that node-postgres has no way
 * to do, and node-postgres's own TLS parameters, which would override the
 * TLS settings made here (pg lets what it parses from the URL win).
 */
const REFUSED: Record<string, string> = {
  ssl: 'is node-postgres\'s own parameter: use sslmode= (disable, require, verify-ca or verify-full)',
  uselibpqcompat: 'is node-postgres\'s own parameter, and not needed: Tessera always reads sslmode as libpq does',
  hostaddr: 'is not supported: node-postgres connects to host= and resolves it itself; put the address in host= (with verify-full, a name the certificate holds)',
  dbname: 'is not read by node-postgres: put the database in the URL\'s path (postgres://…/NAME)',
  service: 'is not supported: node-postgres reads no pg_service.conf; write the service\'s settings into DATABASE_URL',
  passfile: 'is not supported: put the password in DATABASE_URL (or the URL in a file named by DATABASE_URL_FILE)',
  require_auth: 'is not supported: node-postgres cannot restrict how the server may authenticate it; use sslmode=verify-full, and scram-sha-256 in pg_hba.conf',
  requirepeer: 'is not supported: Node cannot read the user at the other end of a Unix socket; give the socket\'s directory permissions only the postgres user has',
  keepalives_interval: 'is not supported: Node sets only keepalives_idle; the interval is the system\'s (net.ipv4.tcp_keepalive_intvl)',
  keepalives_count: 'is not supported: Node sets only keepalives_idle; the count is the system\'s (net.ipv4.tcp_keepalive_probes)',
  tcp_user_timeout: 'is not supported: Node cannot set TCP_USER_TIMEOUT; the system\'s applies (net.ipv4.tcp_retries2)',
  replication: 'is not supported: Tessera\'s connections are not replication connections',
  krbsrvname: 'is not supported: node-postgres has no Kerberos (GSSAPI); use a password or a client certificate',
  gsslib: 'is not supported: node-postgres has no Kerberos (GSSAPI); use a password or a client certificate',
  gssdelegation: 'is not supported: node-postgres has no Kerberos (GSSAPI); use a password or a client certificate',
  sslkeylogfile: 'is not supported: Tessera writes no TLS keys to a file',
  scram_client_key: 'is not supported: node-postgres authenticates with the password; put it in DATABASE_URL',
  scram_server_key: 'is not supported: node-postgres authenticates with the password; put it in DATABASE_URL',
  oauth_issuer: 'is not supported: node-postgres has no OAuth; use a password or a client certificate',
  oauth_client_id: 'is not supported: node-postgres has no OAuth; use a password or a client certificate',
  oauth_client_secret: 'is not supported: node-postgres has no OAuth; use a password or a client certificate',
  oauth_scope: 'is not supported: node-postgres has no OAuth; use a password or a client certificate'
}

/** A parameter that takes one of a few words: those honoured, and those refused with why. libpq refuses any other. */
interface Choice { takes: readonly string[], refuses: Record<string, string> }

const ONE_HOST = 'Tessera connects to the one host DATABASE_URL names'
const CHOICES: Record<string, Choice> = {
  sslmode: {
    takes: SSL_MODES,
    refuses: {
      prefer: 'Tessera never falls back to a connection without TLS, as libpq\'s prefer does',
      allow: 'Tessera never falls back to a connection without TLS, as libpq\'s allow does',
      'no-verify': 'it is node-postgres\'s own; sslmode=require means the same (TLS, no certificate checked)'
    }
  },
  sslnegotiation: { takes: ['postgres'], refuses: { direct: 'Tessera asks for TLS as every Postgres answers it (direct TLS needs Postgres 17)' } },
  sslsni: { takes: ['1'], refuses: { 0: 'node-postgres always sends the host name (SNI) to a host given by name' } },
  sslcompression: { takes: ['0'], refuses: { 1: 'Node\'s TLS never compresses (compression under TLS leaks secrets: CRIME)' } },
  sslcertmode: { takes: ['allow', 'disable'], refuses: { require: 'Node cannot tell whether the server asked for the client certificate; pg_hba.conf\'s cert method is what insists on it' } },
  channel_binding: {
    takes: ['disable', 'prefer'],
    refuses: { require: 'node-postgres uses channel binding where the server offers it, but goes on without it (a password asked in clear, or no authentication at all); sslmode=verify-full checks the server\'s certificate, which is what channel binding would prove' }
  },
  gssencmode: { takes: ['disable', 'prefer'], refuses: { require: 'node-postgres has no GSSAPI encryption; use sslmode' } },
  target_session_attrs: {
    takes: ['any'],
    refuses: Object.fromEntries(['read-write', 'read-only', 'primary', 'standby', 'prefer-standby'].map((value) => [value, `node-postgres does not check what the server is; ${ONE_HOST}: point it at the primary (a provider's read-write endpoint)`]))
  },
  load_balance_hosts: { takes: ['disable'], refuses: { random: `${ONE_HOST}, at the first address it resolves to` } },
  min_protocol_version: { takes: ['3.0'], refuses: { 3.2: 'node-postgres speaks protocol 3.0', latest: 'node-postgres speaks protocol 3.0' } },
  max_protocol_version: { takes: ['3.0', '3.2', 'latest'], refuses: {} }
}

/** libpq's TLS versions (case aside), as Node names them. */
const TLS_VERSIONS: readonly SecureVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']

/** `sslrootcert=system`: the CAs the system trusts, as libpq 16 and later take it. */
const SYSTEM_CAS = 'system'

/** Words as a sentence lists them: `a, b or c`. */
const listed = (words: readonly string[]): string => words.length < 2 ? words.join('') : `${words.slice(0, -1).join(', ')} or ${words.at(-1) ?? ''}`

/** Every name a parameter may have: what is read here, what pg reads, what is refused. */
const KNOWN = new Set([...READ_HERE, ...PASSED_TO_PG, ...Object.keys(REFUSED)])

function readFile (parameter: string, file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new DatabaseUrlError(`DATABASE_URL's ${parameter} ${JSON.stringify(file)} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

function readPem (parameter: string, file: string, holds: RegExp, what: string): string {
  const text = readFile(parameter, file)
  // TLS ignores a CA file that holds no certificate, and every server then looked untrusted.
  if (!holds.test(text)) throw new DatabaseUrlError(`DATABASE_URL's ${parameter} ${JSON.stringify(file)} holds no PEM ${what}`)
  return text
}

const CERTIFICATE = /-----BEGIN CERTIFICATE-----/
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/
/** PKCS#8's encrypted form, and the older one's header (`openssl genrsa -aes256`). */
const ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/
const CRL = /-----BEGIN X509 CRL-----/
/** The names OpenSSL looks a CRL up by in a directory (`openssl rehash`, c_rehash): the issuer's hash, `.r`, a number. */
const HASHED_CRL = /^[0-9a-f]{8}\.r[0-9]+$/

interface Parsed {
  url: URL
  params: URLSearchParams
  /** The host pg connects to is a Unix socket's directory (`?host=/run/postgresql`, or `%2F…` as the host): no TLS there, as libpq has it. */
  socket: boolean
}

/**
 * Whether pg connects to a Unix socket: it takes the last `host=` given
 * (as libpq does), and the URL's host when that is empty or absent.
 * Judged by the first `host=`, or by the URL's host beside a `host=`, a
 * socket followed by a network host was taken for a socket, and sslmode
 * dropped over the network.
 */
function connectsToSocket (url: URL): boolean {
  const host = url.searchParams.getAll('host').at(-1) ?? ''
  return host === '' ? /^%2f/i.test(url.hostname) : host.startsWith('/')
}

/**
 * Whether an unknown parameter's name may be a password's tail, and so is
 * not printed: one right after `password=` or `sslpassword=` (an `&` in the
 * password, not written %26), or any where the URL names no user and its
 * query holds an `@` (a `?` in the userinfo's password, not written %3F,
 * began the query).
 */
function mayBeSecret (url: URL, name: string): boolean {
  const names = [...url.searchParams.keys()]
  const before = names[names.indexOf(name) - 1]
  return before === 'password' || before === 'sslpassword' || (url.username === '' && url.password === '' && url.search.includes('@'))
}

/** Each parameter's name known, given once, and its value one Tessera can honour. */
function checkParameters (url: URL): void {
  const params = url.searchParams
  for (const name of new Set(params.keys())) {
    if (!KNOWN.has(name)) {
      if (mayBeSecret(url, name)) {
        throw new DatabaseUrlError('DATABASE_URL has a parameter Tessera does not know, not repeated here: it may be part of a password (write an & in a password as %26, a ? as %3F)')
      }
      // libpq refuses a parameter it does not know; pg ignored `SSLMODE=verify-full`, and connected without TLS.
      const meant = name.trim().toLowerCase()
      if (KNOWN.has(meant)) throw new DatabaseUrlError(`DATABASE_URL's ${name}= is not read: parameter names are lower case (${meant}=)`)
      throw new DatabaseUrlError(`DATABASE_URL's ${name}= is not a connection parameter Tessera knows (libpq would refuse it too): remove it`)
    }
    const refused = REFUSED[name]
    if (refused !== undefined) throw new DatabaseUrlError(`DATABASE_URL's ${name}= ${refused}`)
    // libpq and pg take the last of a parameter given twice, which is not what a reader of the URL sees first. host= is judged as pg takes it (connectsToSocket).
    if (name !== 'host' && params.getAll(name).length > 1) throw new DatabaseUrlError(`DATABASE_URL gives ${name} more than once: keep one`)
    const choice = CHOICES[name]
    const value = params.get(name) ?? ''
    if (choice !== undefined && !choice.takes.includes(value)) {
      const why = choice.refuses[value]
      if (why !== undefined) throw new DatabaseUrlError(`DATABASE_URL's ${name}=${value} is not supported: ${why}; use ${listed(choice.takes)}`)
      throw new DatabaseUrlError(`DATABASE_URL's ${name}=${JSON.stringify(value)} is invalid: expected ${listed(choice.takes)}`)
    }
  }
  // libpq tries each host of a list in turn; pg looked the whole list up as one name.
  const host = params.getAll('host').at(-1) ?? ''
  if (host.includes(',')) throw new DatabaseUrlError(`DATABASE_URL's host= names more than one host: ${ONE_HOST}; name one (a provider's endpoint, or a proxy in front of several)`)
  const encoding = params.get('client_encoding')
  // pg always asks the server for UTF8, and decoded what it sent with the encoding named here.
  if (encoding !== null && !['utf8', 'unicode'].includes(encoding.toLowerCase().replace(/[^a-z0-9]/g, ''))) {
    throw new DatabaseUrlError(`DATABASE_URL's client_encoding=${JSON.stringify(encoding)} is not supported: Tessera's connections are always UTF8; remove it`)
  }
}

/**
 * DATABASE_URL as a URL (config.ts has already refused one that is not), its
 * password never in a message, and read as libpq reads one where a URL
 * parser differs:
 * - a `#` is text to libpq, and to a URL the start of a fragment nothing
 *   reads: `…/tessera#?sslmode=verify-full` connected without TLS. Refused.
 * - a `%` that starts no `%XX` libpq refuses; pg-connection-string
 *   re-encodes the whole URL then, and read a socket's `host=%2F…` as a
 *   host name. Refused, and pg is handed the URL as serialized here.
 * - a `+` in the query is a `+` to libpq, and a space to a URL's query:
 *   a passphrase or a path holding one was not libpq's.
 */
function parseUrl (databaseUrl: string): Parsed {
  if (databaseUrl.includes('#')) throw new DatabaseUrlError('DATABASE_URL holds a #, which libpq reads as text and a URL as the start of a fragment that nothing reads: write it %23 (in a password too)')
  if (/%(?![0-9a-f]{2})/i.test(databaseUrl)) throw new DatabaseUrlError('DATABASE_URL holds a % that is not followed by two hex digits, which libpq refuses: write it %25 (in a password too)')
  const query = databaseUrl.indexOf('?')
  let url: URL
  try {
    url = new URL(query < 0 ? databaseUrl : databaseUrl.slice(0, query) + databaseUrl.slice(query).replaceAll('+', '%2B'))
  } catch {
    throw new DatabaseUrlError('DATABASE_URL is not a URL')
  }
  // The URL's own host too: libpq's postgres://a,b/… is a list.
  if (url.hostname.includes(',')) throw new DatabaseUrlError(`DATABASE_URL names more than one host: ${ONE_HOST}; name one (a provider's endpoint, or a proxy in front of several)`)
  checkParameters(url)
  return { url, params: url.searchParams, socket: connectsToSocket(url) }
}

function sslMode (params: URLSearchParams): SslMode {
  const mode = params.get('sslmode')
  if (mode === null) {
    // A CA, a client certificate or a CRL given and no mode: pg made that verified TLS, libpq would prefer it; neither without saying.
    const given = NEED_SSLMODE.filter((name) => params.has(name))
    if (given.length > 0) throw new DatabaseUrlError(`DATABASE_URL has ${given.join(' and ')} but no sslmode: add sslmode=verify-full (or verify-ca, require)`)
    return 'disable'
  }
  // checkParameters has refused any other value, the empty one too (libpq: "invalid sslmode value").
  return mode as SslMode
}

/** The parameters that name a file or a directory (but sslrootcert=system). */
const FILE_PARAMETERS = new Set(['sslrootcert', 'sslcert', 'sslkey', 'sslcrl', 'sslcrldir'])

/**
 * DATABASE_URL with each relative file name (sslrootcert, sslcert, sslkey,
 * sslcrl, sslcrldir) made absolute from `directory`, the one config.ts
 * resolves TESSERA_DATA_DIR from; the rest of the URL as it was, byte for
 * byte. Read later from each process's own working directory, a name meant
 * one thing to the CLI under npm (the project root) and might mean another
 * to any process started elsewhere. Throws DatabaseUrlError as databaseTls.
 */
export function withAbsoluteFiles (databaseUrl: string, directory: string): string {
  const { params } = parseUrl(databaseUrl)
  const query = databaseUrl.indexOf('?')
  if (query < 0) return databaseUrl
  const segments = databaseUrl.slice(query + 1).split('&').map((segment) => {
    const equals = segment.indexOf('=')
    const rawName = equals < 0 ? segment : segment.slice(0, equals)
    // Decoded as parseUrl reads it (a + is a +); checkParameters has refused a name given twice.
    const name = decodeURIComponent(rawName)
    const value = params.get(name) ?? ''
    if (!FILE_PARAMETERS.has(name) || value === '' || path.isAbsolute(value) || (name === 'sslrootcert' && value === SYSTEM_CAS)) return segment
    return `${rawName}=${encodeURIComponent(path.resolve(directory, value)).replaceAll('%2F', '/')}`
  })
  return `${databaseUrl.slice(0, query)}?${segments.join('&')}`
}

/** Throws DatabaseUrlError when DATABASE_URL's settings cannot be used (config.ts, at start); otherwise what they check. */
export function databaseTls (databaseUrl: string): DatabaseTls {
  const parsed = parseUrl(databaseUrl)
  const { mode } = tlsOptions(parsed)
  connectionOptions(parsed.params)
  return { mode, verified: mode !== 'require' || parsed.socket || parsed.params.has('sslrootcert') }
}

/** ssl_min_protocol_version and ssl_max_protocol_version as Node names them; empty is unset, as libpq has it. */
function tlsVersion (params: URLSearchParams, name: string): SecureVersion | undefined {
  const value = params.get(name) ?? ''
  if (value === '') return undefined
  const version = TLS_VERSIONS.find((known) => known.toLowerCase() === value.toLowerCase())
  if (version === undefined) throw new DatabaseUrlError(`DATABASE_URL's ${name}=${JSON.stringify(value)} is invalid: expected ${listed(TLS_VERSIONS)}`)
  return version
}

/**
 * Each CRL of a PEM file, apart: Node's `crl` reads only the first of a
 * string, where OpenSSL under libpq loads every one of the file. A file of
 * an older CRL then a newer one that revokes the server's certificate
 * connected, and a bundle of an intermediate's CRL and its root's
 * found the one it did not read missing.
 */
const EACH_CRL = /-----BEGIN X509 CRL-----[\s\S]*?-----END X509 CRL-----/g

/** The CRLs of sslcrl and sslcrldir, as libpq reads them: a PEM file, and the CRLs of a directory `openssl rehash` has named. */
function revocationLists (params: URLSearchParams): string[] {
  const files: Array<{ parameter: string, file: string, text: string }> = []
  const file = params.get('sslcrl')
  if (file !== null) files.push({ parameter: 'sslcrl', file, text: readPem('sslcrl', file, CRL, 'CRL') })
  const dir = params.get('sslcrldir')
  if (dir !== null) {
    let names: string[]
    try {
      names = readdirSync(dir).filter((name) => HASHED_CRL.test(name)).sort()
    } catch (err) {
      throw new DatabaseUrlError(`DATABASE_URL's sslcrldir ${JSON.stringify(dir)} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    // Node checks revocation only when it is given a CRL: an empty directory checked nothing, where OpenSSL (libpq) finds no CRL and refuses every certificate.
    if (names.length === 0) throw new DatabaseUrlError(`DATABASE_URL's sslcrldir ${JSON.stringify(dir)} holds no CRL named as \`openssl rehash\` names them (HASH.r0)`)
    for (const name of names) files.push({ parameter: 'sslcrldir', file: path.join(dir, name), text: readPem('sslcrldir', path.join(dir, name), CRL, 'CRL') })
  }
  const lists: string[] = []
  // Named with the file: at runtime (tlsReadingClient) this line is all the log says of a file replaced by a bad one.
  for (const { parameter, file: where, text } of files) {
    const crls = text.match(EACH_CRL) ?? []
    // A CRL cut short (no END line) would otherwise be left out, and with it the check.
    if (crls.length !== text.split(CRL).length - 1) throw new DatabaseUrlError(`DATABASE_URL's ${parameter} ${JSON.stringify(where)} holds a CRL Node cannot read (no END line)`)
    for (const crl of crls) {
      try {
        createSecureContext({ crl })
      } catch (err) {
        throw new DatabaseUrlError(`DATABASE_URL's ${parameter} ${JSON.stringify(where)} holds a CRL Node cannot read (${(err as Error).message})`)
      }
      lists.push(crl)
    }
  }
  return lists
}

/** sslkey's key, decrypted with sslpassword when it is encrypted: checked now, so a wrong or missing passphrase stops the start, not every connection. */
function privateKey (params: URLSearchParams, file: string): string {
  const pem = readPem('sslkey', file, PRIVATE_KEY, 'private key')
  const passphrase = params.get('sslpassword') ?? undefined
  // libpq would ask on the terminal, which a service has not.
  if (passphrase === undefined && ENCRYPTED_KEY.test(pem)) throw new DatabaseUrlError(`DATABASE_URL's sslkey ${JSON.stringify(file)} is encrypted: give its passphrase as sslpassword`)
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase }).export({ type: 'pkcs8', format: 'pem' }).toString()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    if (passphrase !== undefined && ENCRYPTED_KEY.test(pem)) throw new DatabaseUrlError(`DATABASE_URL's sslpassword does not decrypt sslkey ${JSON.stringify(file)} (${code})`)
    throw new DatabaseUrlError(`DATABASE_URL's sslkey ${JSON.stringify(file)} is not a private key Node can read (${code})`)
  }
}

/** The settings are checked, and their files read, for a socket too: a URL refused one way is refused every way. */
function tlsOptions ({ params, socket }: Parsed): { mode: SslMode, ssl: false | ConnectionOptions } {
  const mode = sslMode(params)
  if (mode === 'disable') return { mode, ssl: false }
  const rootcert = params.get('sslrootcert') ?? undefined
  if (rootcert === SYSTEM_CAS && mode !== 'verify-full') {
    throw new DatabaseUrlError(`DATABASE_URL's sslrootcert=system takes sslmode=verify-full, not ${mode}: any server with a certificate from a public CA would pass`)
  }
  if (rootcert === undefined && mode === 'verify-ca') {
    throw new DatabaseUrlError('DATABASE_URL\'s sslmode=verify-ca needs sslrootcert, the CA that signed the server\'s certificate: against a public CA, only verify-full tells your server from anyone else\'s')
  }
  const ssl: ConnectionOptions = {}
  if (rootcert === SYSTEM_CAS) ssl.ca = getCACertificates('system').join('\n')
  else if (rootcert !== undefined) ssl.ca = readPem('sslrootcert', rootcert, CERTIFICATE, 'certificate')
  // libpq's require checks nothing, unless a CA is given: then as verify-ca.
  const checksNothing = mode === 'require' && rootcert === undefined
  if (checksNothing) ssl.rejectUnauthorized = false
  if (mode === 'verify-ca' || (mode === 'require' && rootcert !== undefined)) ssl.checkServerIdentity = () => undefined
  const crl = revocationLists(params)
  if (crl.length > 0 && checksNothing) {
    // Node, as OpenSSL under libpq, checks revocation as part of the certificate's check, which require without a CA does not make.
    throw new DatabaseUrlError(`DATABASE_URL's ${params.has('sslcrl') ? 'sslcrl' : 'sslcrldir'} is checked only with the certificate: use sslmode=verify-full (or verify-ca, or require with sslrootcert)`)
  }
  if (crl.length > 0) ssl.crl = crl
  // libpq's default minimum, whatever Node's was set to (--tls-min-v1.0).
  ssl.minVersion = tlsVersion(params, 'ssl_min_protocol_version') ?? 'TLSv1.2'
  const maxVersion = tlsVersion(params, 'ssl_max_protocol_version')
  if (maxVersion !== undefined) {
    if (TLS_VERSIONS.indexOf(maxVersion) < TLS_VERSIONS.indexOf(ssl.minVersion)) {
      throw new DatabaseUrlError(`DATABASE_URL's ssl_max_protocol_version=${maxVersion} is below its minimum (${ssl.minVersion}): no TLS version is left`)
    }
    ssl.maxVersion = maxVersion
  }
  const cert = params.get('sslcert') ?? undefined
  const key = params.get('sslkey') ?? undefined
  if ((cert === undefined) !== (key === undefined)) throw new DatabaseUrlError('DATABASE_URL has one of sslcert and sslkey: a client certificate takes both')
  if (cert === undefined && params.has('sslpassword')) throw new DatabaseUrlError('DATABASE_URL has sslpassword but no sslkey: it is the passphrase of sslkey\'s key')
  if (cert !== undefined && key !== undefined) {
    const certificate = readPem('sslcert', cert, CERTIFICATE, 'certificate')
    const decrypted = privateKey(params, key)
    // sslcertmode=disable: read and checked as any, and never sent.
    if (params.get('sslcertmode') !== 'disable') {
      ssl.cert = certificate
      // Not enumerable, as pg keeps it: nothing that prints the options prints the key.
      Object.defineProperty(ssl, 'key', { value: decrypted, enumerable: false })
    }
  }
  // libpq ignores sslmode over a Unix socket, which Postgres never takes TLS on: nothing crosses a network.
  return { mode, ssl: socket ? false : ssl }
}

/** A whole number of seconds, as libpq reads connect_timeout and keepalives_idle (blanks around it aside); at most what setTimeout takes. */
function seconds (params: URLSearchParams, name: string): number | undefined {
  const value = params.get(name)
  if (value === null) return undefined
  const trimmed = value.trim()
  if (!/^[+-]?[0-9]{1,7}$/.test(trimmed) || Math.abs(Number(trimmed)) > 2_147_483) {
    throw new DatabaseUrlError(`DATABASE_URL's ${name}=${JSON.stringify(value)} is invalid: expected whole seconds, at most 2147483`)
  }
  return Number(trimmed)
}

/** The longest keepalives_idle Linux takes (MAX_TCP_KEEPIDLE), in seconds. */
const MAX_KEEPALIVE_IDLE = 32_767

/** channel_binding, keepalives and connect_timeout, as pg's options. */
function connectionOptions (params: URLSearchParams): Omit<PostgresClientConfig, 'connectionString' | 'ssl' | 'sslnegotiation'> {
  const keepalives = params.get('keepalives')
  if (keepalives !== null && !/^\s*[+-]?[0-9]+\s*$/.test(keepalives)) throw new DatabaseUrlError(`DATABASE_URL's keepalives=${JSON.stringify(keepalives)} is invalid: expected 1 (on) or 0 (off)`)
  const options: ReturnType<typeof connectionOptions> = {
    enableChannelBinding: params.get('channel_binding') === 'prefer',
    keepAlive: keepalives === null || Number(keepalives) !== 0
  }
  const idle = seconds(params, 'keepalives_idle')
  if (idle !== undefined && idle < 0) throw new DatabaseUrlError(`DATABASE_URL's keepalives_idle=${idle} is invalid: expected whole seconds, 0 (the system's) or more`)
  // Linux takes at most 32767 (TCP_KEEPIDLE): libpq then fails to connect, and Node went on with the system's idle time, saying nothing.
  if (idle !== undefined && idle > MAX_KEEPALIVE_IDLE) throw new DatabaseUrlError(`DATABASE_URL's keepalives_idle=${idle} is not supported: the most the system takes is ${MAX_KEEPALIVE_IDLE} seconds`)
  // Node's 0 is the system's idle time, as libpq's.
  if (idle !== undefined) options.keepAliveInitialDelayMillis = idle * 1000
  const timeout = seconds(params, 'connect_timeout')
  // libpq waits without end; in a pool it bounds the wait for a free connection too, which would then queue requests without end.
  if (timeout !== undefined && timeout <= 0) throw new DatabaseUrlError(`DATABASE_URL's connect_timeout=${timeout} is not supported: libpq waits without end, and Tessera bounds every wait for a connection; give seconds, 1 or more`)
  if (timeout !== undefined) options.connectionTimeoutMillis = timeout * 1000
  return options
}

/** What pg is handed for DATABASE_URL (or any URL Tessera connects with): read when a pool or client is made, and again for each connection by tlsReadingClient's Client. */
export function postgresClientConfig (databaseUrl: string): PostgresClientConfig {
  const parsed = parseUrl(databaseUrl)
  const { params, url } = parsed
  const { ssl } = tlsOptions(parsed)
  const rest: Omit<PostgresClientConfig, 'connectionString'> = { ssl, sslnegotiation: 'postgres', ...connectionOptions(params) }
  const applicationName = params.get('application_name')
  if (applicationName !== null) rest.application_name = applicationName
  for (const name of READ_HERE) params.delete(name)
  return { connectionString: url.toString(), ...rest }
}

/**
 * The TLS settings of one new connection, its files read now: a file
 * unreadable or invalid since the start fails this connection alone.
 */
function freshTls (parsed: Parsed): { ssl: false | ConnectionOptions } | { unreadable: DatabaseTlsFileError } {
  try {
    return { ssl: tlsOptions(parsed).ssl }
  } catch (err) {
    if (err instanceof DatabaseUrlError) return { unreadable: new DatabaseTlsFileError(err.message) }
    throw err
  }
}

/**
 * The pg.Client class for DATABASE_URL's connections: a pg.Pool's `Client`,
 * or made directly. libpq reads sslrootcert, sslcert, sslkey (decrypted with
 * sslpassword), sslcrl and sslcrldir each time it connects; read once at the
 * start, a client certificate or CA bundle rotated on disk (cert-manager, a
 * Vault agent) or a renewed CRL was not seen until a restart, and once the
 * old CRL's next update passed every new connection was refused. So each
 * Client reads them when it is made, with the start's checks: pg-pool makes
 * one per new connection, never per query. A file that fails them fails
 * that connection (DatabaseTlsFileError, out of reach as errors.ts has it:
 * a request answers 503) and the next one reads it again. The constructor
 * never throws: pg-pool makes clients where a throw would escape it.
 * Without TLS, or over a Unix socket, there is nothing to read: pg's own.
 * Throws DatabaseUrlError as postgresClientConfig does, for a URL the start
 * would refuse.
 */
export function tlsReadingClient (databaseUrl: string): typeof pg.Client {
  const parsed = parseUrl(databaseUrl)
  if (sslMode(parsed.params) === 'disable' || parsed.socket) return pg.Client
  return class TlsReadingClient extends pg.Client {
    readonly #unreadable: DatabaseTlsFileError | undefined

    constructor (config?: pg.ClientConfig) {
      const tls = freshTls(parsed)
      super({ ...config, ssl: 'ssl' in tls ? tls.ssl : config?.ssl })
      this.#unreadable = 'unreadable' in tls ? tls.unreadable : undefined
    }

    override connect (): Promise<pg.Client>
    override connect (callback: (err: Error) => void): void
    override connect (callback?: (err: Error) => void): Promise<pg.Client> | undefined {
      const unreadable = this.#unreadable
      if (callback === undefined) return unreadable === undefined ? super.connect() : Promise.reject(unreadable)
      // Asynchronous, as a refused connection is: pg-pool counts on it.
      if (unreadable === undefined) super.connect(callback)
      else process.nextTick(callback, unreadable)
      return undefined
    }
  }
}

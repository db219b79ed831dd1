/**
 * DATABASE_URL's TLS parameters, read by Tessera with libpq's meanings
 * (psql, pg_dump, every provider's documentation), not node-postgres's.
 * node-postgres 8 takes sslmode=require, prefer and verify-ca as verify-full
 * and prints a multi-line SECURITY WARNING on stderr saying version 9 will
 * switch to libpq's; read here, a URL means one thing whichever pg is
 * installed, and pg never sees the parameters (no warning). The connection
 * string pg is handed has them taken out, and `ssl` and `sslnegotiation`
 * are always set, so pg's own PGSSLMODE and PGSSLNEGOTIATION are not read
 * either: DATABASE_URL alone says. docs/decisions.md,
 * "Postgres over TLS".
 * @module
 */
import { readFileSync } from 'node:fs'
import { getCACertificates, type ConnectionOptions } from 'node:tls'
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

export interface PostgresClientConfig {
  /** DATABASE_URL without its TLS parameters. */
  connectionString: string
  ssl: false | ConnectionOptions
  /** Set, so that pg reads no PGSSLNEGOTIATION: its `direct` is refused by Postgres before 17, and without TLS refused by pg. */
  sslnegotiation: 'postgres'
}

/** DATABASE_URL's TLS settings cannot be used: the message is one line that names no password. */
export class DatabaseUrlError extends TesseraError {
  readonly code = 'ERR_DATABASE_URL'
}

/** The parameters read here, taken out of what pg parses. */
const TLS_PARAMETERS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslnegotiation']

/**
 * node-postgres's own TLS parameters: each would override the TLS settings
 * made here (pg lets what it parses from the URL win), so they are refused,
 * saying what to write instead.
 */
const PG_ONLY: Record<string, string> = {
  ssl: 'ssl= is node-postgres\'s own parameter: use sslmode= (disable, require, verify-ca or verify-full)',
  uselibpqcompat: 'uselibpqcompat= is node-postgres\'s own parameter, and not needed: Tessera always reads sslmode as libpq does'
}

/** Why an sslmode Tessera does not take is refused. */
const REFUSED_MODES: Record<string, string> = {
  prefer: 'Tessera never falls back to a connection without TLS, as libpq\'s prefer does',
  allow: 'Tessera never falls back to a connection without TLS, as libpq\'s allow does',
  'no-verify': 'it is node-postgres\'s own; sslmode=require means the same (TLS, no certificate checked)'
}

/** The sslmode list as the refusals name it. */
const ACCEPTED = 'disable, require, verify-ca or verify-full'

/** `sslrootcert=system`: the CAs the system trusts, as libpq 16 and later take it. */
const SYSTEM_CAS = 'system'

function readPem (parameter: string, file: string, holds: RegExp, what: string): string {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new DatabaseUrlError(`DATABASE_URL's ${parameter} ${JSON.stringify(file)} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  // TLS ignores a CA file that holds no certificate, and every server then looked untrusted.
  if (!holds.test(text)) throw new DatabaseUrlError(`DATABASE_URL's ${parameter} ${JSON.stringify(file)} holds no PEM ${what}`)
  return text
}

const CERTIFICATE = /-----BEGIN CERTIFICATE-----/
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/

interface Parsed {
  url: URL
  params: URLSearchParams
  /** The host pg connects to is a Unix socket's directory (`?host=/run/postgresql`, or `%2F…` as the host): no TLS there, as libpq has it. */
  socket: boolean
}

/**
 * Whether pg connects to a Unix socket: it takes the last `host=` given
 * (as libpq does), and the URL's own host when that is empty or absent.
 * Judged by the first `host=`, or by the URL's host beside a `host=`, a
 * socket followed by a network host was taken for a socket, and sslmode
 * dropped over the network.
 */
function connectsToSocket (url: URL): boolean {
  const host = url.searchParams.getAll('host').at(-1) ?? ''
  return host === '' ? /^%2f/i.test(url.hostname) : host.startsWith('/')
}

/** DATABASE_URL as a URL (config.ts has already refused one that is not), its password never in a message. */
function parseUrl (databaseUrl: string): Parsed {
  let url: URL
  try {
    url = new URL(databaseUrl)
  } catch {
    throw new DatabaseUrlError('DATABASE_URL is not a URL')
  }
  for (const [name, why] of Object.entries(PG_ONLY)) {
    if (url.searchParams.has(name)) throw new DatabaseUrlError(`DATABASE_URL's ${why}`)
  }
  for (const name of new Set(url.searchParams.keys())) {
    // libpq refuses a parameter it does not know; pg ignored `SSLMODE=verify-full`, and connected without TLS.
    const meant = name.trim().toLowerCase()
    if (meant !== name && (TLS_PARAMETERS.includes(meant) || meant in PG_ONLY)) {
      throw new DatabaseUrlError(`DATABASE_URL's ${name}= is not read: parameter names are lower case (${meant}=)`)
    }
    // libpq and pg take the last of a parameter given twice, which is not what a reader of the URL sees first.
    if (TLS_PARAMETERS.includes(name) && url.searchParams.getAll(name).length > 1) throw new DatabaseUrlError(`DATABASE_URL gives ${name} more than once: keep one`)
  }
  return { url, params: url.searchParams, socket: connectsToSocket(url) }
}

function sslMode (params: URLSearchParams): SslMode {
  const mode = params.get('sslmode')
  if (mode === null || mode === '') {
    // A CA or a client certificate given and no mode: pg made that verified TLS, libpq would prefer it; neither without saying.
    const given = ['sslrootcert', 'sslcert', 'sslkey'].filter((name) => params.has(name))
    if (given.length > 0) throw new DatabaseUrlError(`DATABASE_URL has ${given.join(' and ')} but no sslmode: add sslmode=verify-full (or verify-ca, require)`)
    return 'disable'
  }
  const refused = REFUSED_MODES[mode]
  if (refused !== undefined) throw new DatabaseUrlError(`DATABASE_URL's sslmode=${mode} is not supported: ${refused}; use ${ACCEPTED}`)
  if (!SSL_MODES.includes(mode)) throw new DatabaseUrlError(`DATABASE_URL's sslmode=${JSON.stringify(mode)} is invalid: expected ${ACCEPTED}`)
  return mode as SslMode
}

/** Throws DatabaseUrlError when DATABASE_URL's TLS settings cannot be used (config.ts, at start); otherwise what they check. */
export function databaseTls (databaseUrl: string): DatabaseTls {
  const parsed = parseUrl(databaseUrl)
  const { mode } = tlsOptions(parsed)
  return { mode, verified: mode !== 'require' || parsed.socket || parsed.params.has('sslrootcert') }
}

/** The settings are checked, and their files read, for a socket too: a URL refused one way is refused every way. */
function tlsOptions ({ params, socket }: Parsed): { mode: SslMode, ssl: false | ConnectionOptions } {
  const mode = sslMode(params)
  const negotiation = params.get('sslnegotiation')
  if (negotiation !== null && negotiation !== 'postgres') {
    throw new DatabaseUrlError(`DATABASE_URL's sslnegotiation=${JSON.stringify(negotiation)} is not supported: Tessera asks for TLS as Postgres has always answered it (sslnegotiation=postgres)`)
  }
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
  if (mode === 'require' && rootcert === undefined) ssl.rejectUnauthorized = false
  if (mode === 'verify-ca' || (mode === 'require' && rootcert !== undefined)) ssl.checkServerIdentity = () => undefined
  const cert = params.get('sslcert') ?? undefined
  const key = params.get('sslkey') ?? undefined
  if ((cert === undefined) !== (key === undefined)) throw new DatabaseUrlError('DATABASE_URL has one of sslcert and sslkey: a client certificate takes both')
  if (cert !== undefined && key !== undefined) {
    ssl.cert = readPem('sslcert', cert, CERTIFICATE, 'certificate')
    // Not enumerable, as pg keeps it: nothing that prints the options prints the key.
    Object.defineProperty(ssl, 'key', { value: readPem('sslkey', key, PRIVATE_KEY, 'private key'), enumerable: false })
  }
  // libpq ignores sslmode over a Unix socket, which Postgres never takes TLS on: nothing crosses a network.
  return { mode, ssl: socket ? false : ssl }
}

/** What pg is handed for DATABASE_URL (or any URL Tessera connects with): read when a pool or client is made. */
export function postgresClientConfig (databaseUrl: string): PostgresClientConfig {
  const parsed = parseUrl(databaseUrl)
  const { params, url } = parsed
  const { ssl } = tlsOptions(parsed)
  if (!TLS_PARAMETERS.some((name) => params.has(name))) return { connectionString: databaseUrl, ssl, sslnegotiation: 'postgres' }
  for (const name of TLS_PARAMETERS) params.delete(name)
  return { connectionString: url.toString(), ssl, sslnegotiation: 'postgres' }
}

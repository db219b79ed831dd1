/**
 * Tessera against a Postgres that takes only TLS, as managed Postgres (RDS,
 * Cloud SQL, Azure) is run: the embedded Postgres's binaries (built with
 * OpenSSL) with ssl = on, a server certificate from a CA made here, and
 * pg_hba.conf of hostssl lines only, so a connection without TLS is refused.
 * docs/operators.md, "Postgres over TLS": what each sslmode means, every
 * connection over TLS (the CLI, the primary's pools, the LISTEN connection,
 * the workers'), each refusal one line naming its cause, and the TLS files
 * read again for each new connection (a rotated client certificate, a
 * renewed CRL, a file gone), as libpq reads them.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chownSync, copyFileSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { request, spawnProcess } from '@tessera/testkit'
import { postgresClientConfig } from '../../src/db/tls.js'
import { hashedCrlName, makeCrl } from '../helpers/crl.js'
import { createTestDatabase } from '../helpers/db.js'
import { tempDir } from '../helpers/gateway.js'
import { kidOf, loginOver, refreshOver, signUpOver, within } from '../helpers/http.js'
import { instancePids, removeDataDirAtEnd, requestLineOf, runCli, SERVER_ENTRY, startServer } from '../helpers/server.js'

// Its clusters, certificates, CRLs and some forty server and CLI starts take 40–60 s alone; .ci/run's lanes and other work on a 2-core machine
// doubled that past 120 s once (CI, session 35), and tap's timeout runs no teardowns.
t.setTimeout(300_000)

const KEK = randomBytes(32).toString('base64url')
const dir = tempDir(t, 'postgres-tls')

/** openssl in `dir`; the files it makes are the CA, the certificates and their keys the tests use. */
function openssl (...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}
const file = (name: string): string => path.join(dir, name)

// The CA DATABASE_URL trusts, another that signed nothing of the server's, the
// server's certificate (for 127.0.0.1 only: by the name localhost it is
// another host), a self-signed one, and a client certificate for tessera_cert.
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=tessera test CA', '-keyout', 'ca.key', '-out', 'ca.pem')
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=another CA', '-keyout', 'other.key', '-out', 'other.pem')
writeFileSync(file('server.ext'), 'subjectAltName=IP:127.0.0.1\n')
openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=tessera test database', '-keyout', 'server.key', '-out', 'server.csr')
openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem')
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', 'self.key', '-out', 'self.pem')
openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=tessera_cert', '-keyout', 'client.key', '-out', 'client.csr')
openssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'client.pem')
// The client's key again, encrypted with a passphrase (sslpassword); and the CA's CRLs: one that revokes nothing, one
// that revokes the server's certificate, and the latter in a directory as `openssl rehash` names it (sslcrldir).
const KEY_PASSPHRASE = randomBytes(12).toString('base64url')
openssl('pkey', '-in', 'client.key', '-aes256', '-passout', `pass:${KEY_PASSPHRASE}`, '-out', 'client-encrypted.key')
const CA = { cert: file('ca.pem'), key: file('ca.key') }
const crlNone = makeCrl(dir, 'crl-none', CA)
const crlServer = makeCrl(dir, 'crl-server', CA, [file('server.pem')])
const crlOther = makeCrl(dir, 'crl-other', { cert: file('other.pem'), key: file('other.key') })
const crlDir = file('crls')
mkdirSync(crlDir)
copyFileSync(crlServer, path.join(crlDir, hashedCrlName(crlServer)))
// A second CA and a client certificate for tessera_cert from it: what a rotation on disk puts in place.
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=tessera test CA 2', '-keyout', 'ca2.key', '-out', 'ca2.pem')
openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=tessera_cert', '-keyout', 'client2.key', '-out', 'client2.csr')
openssl('x509', '-req', '-in', 'client2.csr', '-CA', 'ca2.pem', '-CAkey', 'ca2.key', '-CAcreateserial', '-days', '2', '-out', 'client2.pem')

// An embedded cluster of its own (`tessera db start`), then TLS turned on, in t.before: a top-level set-up that throws
// ends the file before any teardown runs, and a failed reload check left the cluster running and its directory in
// /var/tmp/tessera-postgres (as root the cluster lives outside the data directory: operators.md, TESSERA_DATA_DIR).
const dataDir = tempDir(t, 'postgres-tls-data')
const dbEnv = { TESSERA_DATA_DIR: dataDir }
removeDataDirAtEnd(t, dataDir)
/** The superuser's connection through the cluster's Unix socket, which pg_hba.conf still admits: the test's own view. */
let admin: pg.Client | undefined
t.teardown(async () => { await admin?.end() })
const adminQuery = async <R extends pg.QueryResultRow>(text: string): Promise<pg.QueryResult<R>> => {
  if (admin === undefined) throw new Error('no admin connection: the set-up failed')
  return await admin.query<R>(text)
}
const setting = async (name: string): Promise<string> => String((await adminQuery<{ v: string }>(`SELECT current_setting('${name}') AS v`)).rows[0]?.v)
let dataDirectory = ''
let owner = { uid: 0, gid: 0 }
let socketUrl = ''
let tcp = new URL('postgres://unset')
let PASSWORD = ''
let verifyFull = ''

/** The server's certificate and key, put where Postgres reads them, and read again (ssl is reloadable). */
async function serveCertificate (cert: string, key: string): Promise<void> {
  for (const [from, to] of [[cert, 'server.crt'], [key, 'server.key'], ['ca.pem', 'root.crt']] as const) {
    writeFileSync(path.join(dataDirectory, to), readFileSync(file(from)), { mode: 0o600 })
    chownSync(path.join(dataDirectory, to), owner.uid, owner.gid)
  }
  await adminQuery('SELECT pg_reload_conf()')
}

/** The cluster's `tessera` database over TCP on `host`, with these TLS parameters. */
function urlWith (params: Record<string, string>, host = '127.0.0.1'): string {
  const url = new URL(tcp)
  url.hostname = host
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value)
  return url.toString()
}

t.before(async () => {
  // libpq's TLS variables, as a shell set up for psql has them, are not read: the embedded Postgres takes no TLS on its socket,
  // and pg, reading them, asked it for TLS there ("The server does not support SSL connections") and the start failed.
  const started = await runCli(['db', 'start', '--json'], { ...dbEnv, PGSSLMODE: 'require', PGSSLNEGOTIATION: 'direct' })
  if (started.code !== 0) throw new Error(`tessera db start: ${started.stderr}`)
  socketUrl = (JSON.parse(started.stdout) as { url: string }).url
  admin = new pg.Client({ connectionString: socketUrl })
  await admin.connect()
  dataDirectory = await setting('data_directory')
  owner = statSync(dataDirectory)
  await adminQuery("ALTER SYSTEM SET ssl = 'on'")
  await adminQuery("ALTER SYSTEM SET ssl_ca_file = 'root.crt'")
  // Over TCP only TLS: a client certificate for tessera_cert, a password for anyone else. The socket is the test's.
  writeFileSync(await setting('hba_file'), [
    'local all all scram-sha-256',
    ...['127.0.0.1/32', '::1/128'].flatMap((from) => [`hostssl all tessera_cert ${from} cert`, `hostssl all all ${from} scram-sha-256`]),
    ''
  ].join('\n'))
  await adminQuery('CREATE ROLE tessera_cert LOGIN SUPERUSER')
  await serveCertificate('server.pem', 'server.key')

  tcp = new URL(socketUrl)
  tcp.searchParams.delete('host')
  PASSWORD = decodeURIComponent(tcp.password)
  verifyFull = urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem') })
  // The reload is asynchronous: a connection over TLS goes through once it has taken effect.
  const reloaded = await within(10_000, async () => {
    const client = new pg.Client({ connectionString: tcp.toString(), ssl: { ca: readFileSync(file('ca.pem'), 'utf8') } })
    client.on('error', () => {})
    return await client.connect().then(async () => { await client.end(); return true }, () => false)
  }, 100)
  if (reloaded === undefined) throw new Error('the cluster did not take TLS connections after its reload')
})

/** Tessera's backends (not the test's own), with whether each is over TLS. */
async function tesseraBackends (): Promise<Array<{ application_name: string, ssl: boolean, client_addr: string | null }>> {
  const { rows } = await adminQuery<{ application_name: string, ssl: boolean, client_addr: string | null }>(
    "SELECT a.application_name, s.ssl, a.client_addr FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = 'tessera' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()")
  return rows
}

/** One line on stderr, and nothing a person would not want there: no stack, no password, nothing of pg's multi-line warning. */
function oneLine (t: Test, stderr: string, pattern: RegExp, what: string): void {
  t.equal(stderr.split('\n').length, 2, `${what}: one line (${JSON.stringify(stderr)})`)
  t.match(stderr, pattern, what)
  t.notMatch(stderr, /\n\s+at |SECURITY WARNING|Warning:/, `${what}: no stack, no warning`)
  t.notOk(stderr.includes(PASSWORD), `${what}: no password`)
}

/** A server start that must be refused: its exit code and output, or 'serving' when it started after all. */
async function refusedStart (databaseUrl: string): Promise<{ code: number | null | 'serving', stdout: string, stderr: string }> {
  const server = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', PORT: '0', DATABASE_URL: databaseUrl, TESSERA_KEK: KEK, TESSERA_WORKERS: '1' } })
  const code = await Promise.race([server.closed, new Promise<'serving'>((resolve) => {
    server.waitFor(/"msg":"tessera is serving"/, 60_000).then(() => resolve('serving'), () => {})
  })])
  await server.stop('SIGKILL')
  return { code, stdout: server.stdout(), stderr: server.stderr() }
}

t.test('verify-full: the CLI, the migrations and an instance of two workers, every connection over TLS', async (t) => {
  const env = { DATABASE_URL: verifyFull, TESSERA_KEK: KEK }
  const migrated = await runCli(['migrate', 'up'], env)
  t.equal(migrated.code, 0, migrated.stderr)
  t.equal(migrated.stderr, '', 'nothing on stderr')
  const created = await runCli(['users', 'create', 'alice'], env, 'correct horse battery\n')
  t.equal(created.code, 0, created.stderr)
  const service = await runCli(['clients', 'create', 'reporting', '--confidential', '--grants', 'client_credentials', '--json'], env)
  t.equal(service.code, 0, service.stderr)
  const secret = String((JSON.parse(service.stdout) as { client_secret: string }).client_secret)

  // DATABASE_URL from a file, as a secret is mounted, naming the CA's file.
  const urlFile = file('database-url')
  writeFileSync(urlFile, `${verifyFull}\n`, { mode: 0o600 })
  const server = await startServer(t, { DATABASE_URL_FILE: urlFile, TESSERA_KEK: KEK, TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '1000000', TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1h' })
  const tokens = await loginOver(server.url, 'alice', 'correct horse battery')
  const refreshed = await refreshOver(server.url, tokens.refresh_token)
  t.equal(refreshed.status, 200, 'a refresh')
  await signUpOver(server.url, 'bob', 'another long passphrase')
  const granted = await request(`${server.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=client_credentials&client_id=reporting&client_secret=${encodeURIComponent(secret)}` })
  t.equal(granted.status, 200, 'client_credentials, for the client the CLI made')

  const backends = await tesseraBackends()
  t.ok(backends.length >= 3, `the instance's connections: ${backends.length}`)
  t.ok(backends.every((b) => b.ssl && b.client_addr !== null), 'every one over TCP with TLS')
  t.ok(backends.some((b) => b.application_name === 'tessera-listener'), 'the LISTEN connection among them')

  // A key rotated by the CLI reaches both workers by NOTIFY: the periodic reload is an hour away.
  const rotated = await runCli(['keys', 'rotate', '--now', '--json'], env)
  t.equal(rotated.code, 0, rotated.stderr)
  const promoted = String((JSON.parse(rotated.stdout) as { promoted: string }).promoted)
  let asked = 0
  const everywhere = await within(15_000, async () => {
    // Each on a connection of its own, which the kernel hands to either worker: 24 miss one of two once in millions.
    const bodies = await Promise.all(Array.from({ length: 24 }, async () => (await request(`${server.url}/.well-known/jwks.json`)).body))
    asked += bodies.length
    return bodies.every((body) => body.includes(promoted))
  }, 100)
  t.ok(everywhere !== undefined, 'the new key is published by every worker')
  const jwksLines = await server.logOf(asked, (line) => line.includes('"route":"/.well-known/jwks.json"') && line.includes('"msg":"request"'))
  t.equal(new Set(jwksLines.map((line) => (JSON.parse(line) as { pid: number }).pid)).size, 2, 'answered by both workers')
  const after = await refreshOver(server.url, String(refreshed.body.refresh_token))
  t.equal(kidOf(String(after.body.access_token)), promoted, 'and signs')

  // The server's certificate replaced by one no CA of DATABASE_URL's signed: a new connection is refused, and a request needing one answered 503, its cause logged.
  await serveCertificate('self.pem', 'self.key')
  await endTesseraBackends()
  const me = async (): Promise<number> => (await request(`${server.url}/v1/me`, { headers: { authorization: `Bearer ${String(after.body.access_token)}` } })).status
  const { refused, statuses } = await untilRefusalLogged(server, me, 'DEPTH_ZERO_SELF_SIGNED_CERT')
  t.ok(refused !== undefined, 'a request met the refused certificate, logged as database unavailable with its code')
  t.notOk(statuses.has(500), `no 500 (saw ${[...statuses].join(', ')})`)
  t.ok(statuses.has(503), 'answered 503')
  t.equal((await request(`${server.url}/readyz`)).status, 503, 'not ready')
  const unavailable = server.output().split('\n').filter((line) => line.includes('DEPTH_ZERO_SELF_SIGNED_CERT'))
  t.notOk(unavailable.some((line) => line.includes('"stack"')), 'logged with its code and words, no stack')
  t.notOk(server.output().includes(PASSWORD), 'no password logged')

  await serveCertificate('server.pem', 'server.key')
  t.ok(await within(20_000, async () => await me() === 200, 200) !== undefined, 'served again once the certificate is back, with no restart')
  t.equal(await server.stop('SIGTERM'), 0, 'drains and exits 0')
  await server.closed
  t.notMatch(server.output(), /SECURITY WARNING/)
})

t.test('sslmode=require is libpq\'s: encrypted, no certificate checked unless sslrootcert is given; pg\'s warning never printed', async (t) => {
  const require = urlWith({ sslmode: 'require' })
  const cli = await runCli(['migrate', 'status'], { DATABASE_URL: require })
  t.equal(cli.code, 0, 'a server certificate from a CA nobody gave is taken')
  t.equal(cli.stderr, '', 'and nothing is printed on stderr (node-postgres 8 printed its multi-line SECURITY WARNING)')

  const server = await startServer(t, { DATABASE_URL: require, TESSERA_KEK: KEK, TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '1000000' })
  await signUpOver(server.url, 'carol', 'correct horse battery')
  await loginOver(server.url, 'carol', 'correct horse battery')
  t.equal(await server.stop('SIGTERM'), 0)
  await server.closed
  const lines = server.output().split('\n').filter((line) => line !== '')
  t.ok(lines.every((line) => { try { JSON.parse(line); return true } catch { return false } }), 'every line the instance wrote is JSON: no warning from any of its processes')
  t.ok(lines.some((line) => line.includes('"level":40') && line.includes('DATABASE_URL has sslmode=require and no sslrootcert')), 'the start warns that the certificate is not checked')

  const byCa = await runCli(['migrate', 'status'], { DATABASE_URL: urlWith({ sslmode: 'require', sslrootcert: file('other.pem') }) })
  t.equal(byCa.code, 1, 'with sslrootcert, require checks the CA (libpq: as verify-ca)')
  oneLine(t, byCa.stderr, /^tessera: cannot connect to the database over TLS: its certificate is not signed by a CA that DATABASE_URL trusts .*\((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN): /, 'require with another CA')
  const byName = await runCli(['migrate', 'status'], { DATABASE_URL: urlWith({ sslmode: 'verify-ca', sslrootcert: file('ca.pem') }, 'localhost') })
  t.equal(byName.code, 0, 'verify-ca checks the CA, not the host name')
  const withCert = await runCli(['migrate', 'status'], { DATABASE_URL: urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), sslcert: file('client.pem'), sslkey: file('client.key') }).replace(/\/\/tessera:[^@]*@/, '//tessera_cert@') })
  t.equal(withCert.code, 0, `a client certificate (sslcert, sslkey) logs in where pg_hba.conf asks for one: ${withCert.stderr}`)
  const withoutCert = await runCli(['migrate', 'status'], { DATABASE_URL: verifyFull.replace(/\/\/tessera:[^@]*@/, '//tessera_cert@') })
  t.equal(withoutCert.code, 1)
  oneLine(t, withoutCert.stderr, /^tessera: the database refused the connection: connection requires a valid client certificate/, 'no client certificate')
})

t.test('sslcrl and sslcrldir: a server certificate the CA revoked is refused, as libpq refuses it', async (t) => {
  const accepted = await runCli(['migrate', 'status'], { DATABASE_URL: urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), sslcrl: crlNone }) })
  t.equal(accepted.code, 0, `a CRL that revokes nothing: connected (${accepted.stderr})`)
  t.equal(accepted.stderr, '', 'nothing on stderr')
  for (const [what, params] of [['sslcrl', { sslcrl: crlServer }], ['sslcrldir', { sslcrldir: crlDir }]] as const) {
    const refused = await runCli(['migrate', 'status'], { DATABASE_URL: urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), ...params }) })
    t.equal(refused.code, 1, `${what}: the server's certificate revoked, the command exits 1`)
    oneLine(t, refused.stderr, /^tessera: cannot connect to the database over TLS: its certificate was refused \(CERT_REVOKED: certificate revoked\)$/m, `${what}: revoked`)
    const byCa = await runCli(['migrate', 'status'], { DATABASE_URL: urlWith({ sslmode: 'verify-ca', sslrootcert: file('ca.pem'), ...params }, 'localhost') })
    t.equal(byCa.code, 1, `${what}: verify-ca checks it too`)
  }
})

t.test('sslpassword: an encrypted client key logs in with its passphrase, and without it the start says so', async (t) => {
  const asCert = (params: Record<string, string>): string => urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), sslcert: file('client.pem'), sslkey: file('client-encrypted.key'), ...params }).replace(/\/\/tessera:[^@]*@/, '//tessera_cert@')
  const withPassphrase = await runCli(['migrate', 'status'], { DATABASE_URL: asCert({ sslpassword: KEY_PASSPHRASE }) })
  t.equal(withPassphrase.code, 0, `pg_hba.conf's cert method let the client certificate in: ${withPassphrase.stderr}`)
  t.equal(withPassphrase.stderr, '', 'nothing on stderr')
  const server = await startServer(t, { DATABASE_URL: asCert({ sslpassword: KEY_PASSPHRASE }), TESSERA_KEK: KEK, TESSERA_WORKERS: '1' })
  await signUpOver(server.url, 'dave', 'correct horse battery')
  t.equal(await server.stop('SIGTERM'), 0, 'an instance too: primary and worker')
  await server.closed
  t.notOk(server.output().includes(KEY_PASSPHRASE), 'the passphrase is never logged')
  for (const [what, params, pattern] of [
    ['no sslpassword', {}, /^tessera: DATABASE_URL's sslkey ".*client-encrypted\.key" is encrypted: give its passphrase as sslpassword$/m],
    ['a wrong sslpassword', { sslpassword: 'not the passphrase' }, /^tessera: DATABASE_URL's sslpassword does not decrypt sslkey ".*client-encrypted\.key" \([A-Z_]+\)$/m]
  ] as const) {
    const cli = await runCli(['migrate', 'status'], { DATABASE_URL: asCert(params) })
    t.equal(cli.code, 1, `${what}: the command exits 1`)
    oneLine(t, cli.stderr, pattern, `${what}: the CLI`)
    const start = await refusedStart(asCert(params))
    t.equal(start.code, 1, `${what}: the start exits 1`)
    oneLine(t, start.stderr, pattern, `${what}: the server`)
    t.notOk(start.stderr.includes('not the passphrase') || start.stderr.includes(KEY_PASSPHRASE), `${what}: no passphrase printed`)
  }
})

t.test('ssl_max_protocol_version and channel_binding=prefer, on Tessera\'s connection settings against the real server', async (t) => {
  const tlsVersion = async (params: Record<string, string>): Promise<string> => {
    const client = new pg.Client(postgresClientConfig(urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), ...params })))
    await client.connect()
    try {
      return String((await client.query<{ version: string }>('SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]?.version)
    } finally {
      await client.end()
    }
  }
  t.equal(await tlsVersion({}), 'TLSv1.3', 'unbounded: TLS 1.3')
  t.equal(await tlsVersion({ ssl_max_protocol_version: 'TLSv1.2' }), 'TLSv1.2', 'ssl_max_protocol_version=TLSv1.2 is what the server saw (pg ignored it)')
  const bound = await runCli(['migrate', 'status'], { DATABASE_URL: urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), channel_binding: 'prefer' }) })
  t.equal(bound.code, 0, `channel_binding=prefer: SCRAM-SHA-256-PLUS, which this server offers over TLS, logs in (${bound.stderr})`)
})

t.test('the host is the last host= given, as pg and libpq take it: the cluster\'s socket, then 127.0.0.1, is TLS over TCP', async (t) => {
  const socketDir = new URL(socketUrl).searchParams.get('host') ?? ''
  t.ok(socketDir.startsWith('/'), `the cluster's socket: ${socketDir}`)
  // Judged by the first host=, this was a socket and went without TLS, which pg_hba.conf refuses over TCP ("no encryption").
  const databaseUrl = verifyFull.replace('?', `?host=${encodeURIComponent(socketDir)}&host=127.0.0.1&`)
  const cli = await runCli(['migrate', 'status'], { DATABASE_URL: databaseUrl })
  t.equal(cli.code, 0, cli.stderr)
  t.equal(cli.stderr, '', 'nothing on stderr')
})

t.test('each refusal at start is one line naming its cause, from the server and the CLI alike', async (t) => {
  const noTls = new URL(await createTestDatabase(t))
  noTls.searchParams.set('sslmode', 'require')
  const cases: Array<[string, string, RegExp]> = [
    ['a CA that did not sign the server\'s certificate', urlWith({ sslmode: 'verify-full', sslrootcert: file('other.pem') }), /cannot connect to the database over TLS: its certificate is not signed by a CA that DATABASE_URL trusts \(its sslrootcert; without one, Node's public CAs\) \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN): /],
    ['no sslrootcert: Node\'s public CAs, none of which signed it', urlWith({ sslmode: 'verify-full' }), /cannot connect to the database over TLS: its certificate is not signed by a CA that DATABASE_URL trusts .*\((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN): /],
    ['a host name the certificate does not hold', urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem') }, 'localhost'), /cannot connect to the database over TLS: its certificate does not name the host DATABASE_URL connects to \(ERR_TLS_CERT_ALTNAME_INVALID: .*\); connect by a name it holds, or use sslmode=verify-ca$/m],
    ['sslmode=disable where only hostssl admits', urlWith({ sslmode: 'disable' }), /the database refused the connection: no pg_hba.conf entry for host "127.0.0.1", user "tessera", database "tessera", no encryption; it takes this connection only over TLS: set sslmode in DATABASE_URL/],
    ['a server with ssl off', noTls.toString(), /cannot connect to the database over TLS: The server does not support SSL connections \(its ssl is off\), and DATABASE_URL's sslmode requires TLS/],
    ['an sslrootcert that cannot be read', urlWith({ sslmode: 'verify-full', sslrootcert: file('missing.pem') }), /DATABASE_URL's sslrootcert ".*missing\.pem" cannot be read \(ENOENT\)$/m],
    ['an sslrootcert that holds no certificate', urlWith({ sslmode: 'verify-full', sslrootcert: file('server.ext') }), /DATABASE_URL's sslrootcert ".*server\.ext" holds no PEM certificate$/m],
    ['sslmode=prefer, which would fall back to no TLS', urlWith({ sslmode: 'prefer' }), /DATABASE_URL's sslmode=prefer is not supported: Tessera never falls back to a connection without TLS/],
    ['a server certificate its CA revoked (sslcrl)', urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), sslcrl: crlServer }), /cannot connect to the database over TLS: its certificate was refused \(CERT_REVOKED: certificate revoked\)$/m],
    ['an sslcrl with no CRL of the CA that signed it', urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), sslcrl: crlOther }), /cannot connect to the database over TLS: DATABASE_URL's CRLs \(sslcrl, sslcrldir\) cannot tell whether its certificate is revoked \(UNABLE_TO_GET_CRL: unable to get certificate CRL\); give a current CRL of every CA in its chain$/m],
    ['channel_binding=require, which node-postgres does not enforce', urlWith({ sslmode: 'require', channel_binding: 'require' }), /DATABASE_URL's channel_binding=require is not supported: node-postgres uses channel binding where the server offers it, but goes on without it/]
  ]
  for (const [what, databaseUrl, pattern] of cases) {
    const start = await refusedStart(databaseUrl)
    t.equal(start.code, 1, `${what}: the start exits 1`)
    oneLine(t, start.stderr, new RegExp(`^tessera: (?:${pattern.source})`, pattern.flags), `${what}: the server`)
    t.equal(start.stdout, '', `${what}: nothing logged before`)
    const cli = await runCli(['users', 'list'], { DATABASE_URL: databaseUrl })
    t.equal(cli.code, 1, `${what}: the command exits 1`)
    oneLine(t, cli.stderr, new RegExp(`^tessera: (?:${pattern.source})`, pattern.flags), `${what}: the CLI`)
  }
})

/** A file put in place as cert-manager or a Vault agent puts it: written beside `to`, then renamed over it. */
function replaceFile (from: string, to: string): void {
  writeFileSync(`${to}.new`, readFileSync(from))
  renameSync(`${to}.new`, to)
}

/** The CAs whose client certificates Postgres takes (its ssl_ca_file), read again. */
async function trustClientsOf (...cas: string[]): Promise<void> {
  const to = path.join(dataDirectory, 'root.crt')
  writeFileSync(to, cas.map((ca) => readFileSync(file(ca), 'utf8')).join(''), { mode: 0o600 })
  chownSync(to, owner.uid, owner.gid)
  await adminQuery('SELECT pg_reload_conf()')
}

/** Whether tessera_cert logs in over TCP with this client certificate: the server's view of it, once its reload took effect. */
async function logsInWith (cert: string, key: string): Promise<boolean> {
  const url = new URL(tcp)
  url.username = 'tessera_cert'
  url.password = ''
  const client = new pg.Client({ connectionString: url.toString(), ssl: { ca: readFileSync(file('ca.pem'), 'utf8'), cert: readFileSync(file(cert), 'utf8'), key: readFileSync(file(key), 'utf8') } })
  client.on('error', () => {})
  return await client.connect().then(async () => { await client.end(); return true }, () => false)
}

/** Every connection of Tessera's ended, so that the next request needs a new one (and the LISTEN connection reconnects). */
async function endTesseraBackends (): Promise<void> {
  await adminQuery("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'tessera' AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
}

/** Requests until one's new connection is logged refused with `code` (database unavailable), and every status answered meanwhile. */
async function untilRefusalLogged (server: { output: () => string }, me: () => Promise<number>, code: string): Promise<{ refused: number | undefined, statuses: Set<number> }> {
  const statuses = new Set<number>()
  const logged = new RegExp(`"code":"${code}"[^\\n]*"msg":"database unavailable"`)
  const refused = await within(20_000, async () => {
    statuses.add(await me())
    return logged.test(server.output())
  }, 100)
  return { refused, statuses }
}

/** An instance of one worker on `databaseUrl`, a user signed up and logged in, and a request that needs the database. */
async function instanceWithUser (t: Test, databaseUrl: string, username: string): Promise<{ server: Awaited<ReturnType<typeof startServer>>, me: () => Promise<number>, meWithId: () => Promise<{ status: number, id: string }> }> {
  const server = await startServer(t, { DATABASE_URL: databaseUrl, TESSERA_KEK: KEK, TESSERA_WORKERS: '1', TESSERA_RATE_LIMIT: '1000000' })
  await signUpOver(server.url, username, 'correct horse battery')
  const tokens = await loginOver(server.url, username, 'correct horse battery')
  const meWithId = async (): Promise<{ status: number, id: string }> => {
    const answer = await request(`${server.url}/v1/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })
    return { status: answer.status, id: String(answer.headers['x-request-id']) }
  }
  return { server, me: async () => (await meWithId()).status, meWithId }
}

t.test('a client certificate rotated on disk is what the next connection presents, with no restart: libpq reads it for each', async (t) => {
  const live = file('rotated-client')
  mkdirSync(live)
  const cert = path.join(live, 'client.pem')
  const key = path.join(live, 'client.key')
  replaceFile(file('client.pem'), cert)
  replaceFile(file('client.key'), key)
  t.teardown(async () => { await trustClientsOf('ca.pem') })
  await trustClientsOf('ca.pem', 'ca2.pem')
  t.ok(await within(10_000, async () => await logsInWith('client2.pem', 'client2.key'), 100) !== undefined, 'Postgres takes the new CA\'s client certificates too')
  const databaseUrl = urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), sslcert: cert, sslkey: key }).replace(/\/\/tessera:[^@]*@/, '//tessera_cert@')
  const { server, me } = await instanceWithUser(t, databaseUrl, 'erin')
  t.equal(await me(), 200, 'served on the first certificate')
  const issuers = async (): Promise<Array<{ application_name: string, issuer_dn: string }>> => (await adminQuery<{ application_name: string, issuer_dn: string }>(
    "SELECT a.application_name, s.issuer_dn FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'tessera_cert' AND a.backend_type = 'client backend'")).rows
  const before = await issuers()
  t.ok(before.length >= 1 && before.every((b) => b.issuer_dn.endsWith('CN=tessera test CA')), `every connection presents the first CA's certificate: ${JSON.stringify(before)}`)

  // Rotated as cert-manager does: the new certificate and key renamed into place, and the old CA's no longer taken by Postgres.
  replaceFile(file('client2.pem'), cert)
  replaceFile(file('client2.key'), key)
  await trustClientsOf('ca2.pem')
  t.ok(await within(10_000, async () => !await logsInWith('client.pem', 'client.key'), 100) !== undefined, 'Postgres no longer takes the old certificate')
  await endTesseraBackends()
  t.ok(await within(20_000, async () => await me() === 200, 100) !== undefined, 'served on the new certificate, with no restart')
  const listening = await within(20_000, async () => (await issuers()).some((b) => b.application_name === 'tessera-listener'), 100)
  t.ok(listening !== undefined, 'the LISTEN connection reconnected')
  const now = await issuers()
  t.ok(now.length >= 2 && now.every((b) => b.issuer_dn.endsWith('CN=tessera test CA 2')), `every connection presents the new certificate: ${JSON.stringify(now)}`)
  t.equal(await server.stop('SIGTERM'), 0)
})

t.test('a renewed CRL put in place under a running instance is read by the next connection: the revoked server refused (503), no restart', async (t) => {
  const live = file('renewed-crl')
  mkdirSync(live)
  const crl = path.join(live, 'crl.pem')
  replaceFile(crlNone, crl)
  const { server, me } = await instanceWithUser(t, urlWith({ sslmode: 'verify-full', sslrootcert: file('ca.pem'), sslcrl: crl }), 'frank')
  t.equal(await me(), 200, 'served while the CRL revokes nothing')
  const pids = instancePids(server.process.pid ?? 0).sort()

  replaceFile(crlServer, crl)
  await endTesseraBackends()
  const { refused, statuses } = await untilRefusalLogged(server, me, 'CERT_REVOKED')
  t.ok(refused !== undefined, 'a new connection met the renewed CRL: the server\'s certificate revoked, logged as database unavailable')
  t.notOk(statuses.has(500), `no 500 (saw ${[...statuses].join(', ')})`)
  t.ok(statuses.has(503), 'answered 503')
  t.same(instancePids(server.process.pid ?? 0).sort(), pids, 'no process restarted')

  replaceFile(crlNone, crl)
  t.ok(await within(20_000, async () => await me() === 200, 100) !== undefined, 'served again once the CRL in place revokes nothing')
  t.equal(await server.stop('SIGTERM'), 0)
})

t.test('a TLS file unreadable under a running instance: 503 and one warn line naming it, no crash, and served again once it is back', async (t) => {
  const live = file('unreadable-ca')
  mkdirSync(live)
  const ca = path.join(live, 'ca.pem')
  replaceFile(file('ca.pem'), ca)
  const { server, me, meWithId } = await instanceWithUser(t, urlWith({ sslmode: 'verify-full', sslrootcert: ca }), 'grace')
  t.equal(await me(), 200, 'served while the CA file is there')
  const pids = instancePids(server.process.pid ?? 0).sort()

  // Running as root, a mode of 000 would not stop a read: the file is moved away.
  renameSync(ca, `${ca}.away`)
  await endTesseraBackends()
  let refusedId = ''
  const refused = await within(20_000, async () => {
    const { status, id } = await meWithId()
    if (status !== 503) return false
    await server.logOf(1, requestLineOf(id))
    refusedId = id
    return server.output().split('\n').some((line) => line.includes(`"reqId":"${id}"`) && line.includes('ERR_DATABASE_TLS_FILE'))
  }, 100)
  t.ok(refused !== undefined, 'a request needing a new connection was answered 503')
  const naming = server.output().split('\n').filter((line) => line.includes(`"reqId":"${refusedId}"`) && line.includes(ca))
  t.equal(naming.length, 1, `one line names the file: ${JSON.stringify(naming)}`)
  const warned = JSON.parse(naming[0] ?? '{}') as { level?: number, msg?: string, db_error?: { code?: string, message?: string }, err?: unknown }
  t.match(warned, { level: 40, msg: 'database unavailable', db_error: { code: 'ERR_DATABASE_TLS_FILE', message: `DATABASE_URL's sslrootcert "${ca}" cannot be read (ENOENT)` } }, 'a warning with the start\'s line, naming the parameter and the file')
  t.notOk(naming[0]?.includes('"stack"'), 'no stack')
  t.notOk(server.output().includes(PASSWORD), 'no password logged')
  t.same(instancePids(server.process.pid ?? 0).sort(), pids, 'no process crashed or restarted')

  renameSync(`${ca}.away`, ca)
  t.ok(await within(20_000, async () => await me() === 200, 100) !== undefined, 'served again once the file is back, with no restart')
  t.equal(await server.stop('SIGTERM'), 0)
})

/**
 * DATABASE_URL's TLS parameters read with libpq's meanings (db/tls.ts); the
 * connections themselves, against a Postgres that takes only TLS, are
 * test/e2e/postgres-tls.test.ts's.
 */
import { execFileSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import pg from 'pg'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { connect } from '../../src/db/connect.js'
import { databaseTls, DatabaseUrlError, postgresClientConfig, tlsReadingClient } from '../../src/db/tls.js'
import { databaseUnreachable, isDatabaseUnavailable } from '../../src/errors.js'
import { hashedCrlName, makeCrl } from '../helpers/crl.js'
import { tempDir } from '../helpers/gateway.js'

const dir = tempDir(t, 'db-tls')
// Only their markers are read here: TLS reads the rest when it connects.
const ca = `${dir}/ca.pem`
writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
const key = `${dir}/client.key`
// A key made now: no private key, real or stub, is committed.
writeFileSync(key, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }))
const BASE = 'postgres://tessera:s%40cret@db.example:5432/tessera'
const readCa = (): string => '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

t.test('each sslmode as libpq has it', async (t) => {
  t.same(postgresClientConfig(BASE), { connectionString: BASE, ssl: false, sslnegotiation: 'postgres', enableChannelBinding: false, keepAlive: true }, 'no sslmode: no TLS, and pg\'s PGSSLMODE and PGSSLNEGOTIATION not read (both are set); libpq\'s keepalives')
  t.same(postgresClientConfig(`${BASE}?sslmode=disable`).ssl, false)
  t.same(postgresClientConfig(`${BASE}?sslmode=require`).ssl, { rejectUnauthorized: false, minVersion: 'TLSv1.2' }, 'require: encrypted, no certificate checked; TLS 1.2 at least, libpq\'s default')
  const requireWithCa = postgresClientConfig(`${BASE}?sslmode=require&sslrootcert=${ca}`).ssl
  t.match(requireWithCa, { ca: /BEGIN CERTIFICATE/ }, 'require with sslrootcert: the CA checked')
  t.notOk(requireWithCa !== false && 'rejectUnauthorized' in requireWithCa, 'so certificates are verified')
  t.equal(requireWithCa !== false && requireWithCa.checkServerIdentity?.('db.example', {} as never), undefined, '…but not the host name (as verify-ca)')
  const verifyCa = postgresClientConfig(`${BASE}?sslmode=verify-ca&sslrootcert=${ca}`).ssl
  t.ok(verifyCa !== false && typeof verifyCa.checkServerIdentity === 'function' && verifyCa.ca !== undefined, 'verify-ca: the CA, not the name')
  const verifyFull = postgresClientConfig(`${BASE}?sslmode=verify-full&sslrootcert=${ca}`).ssl
  t.ok(verifyFull !== false && verifyFull.checkServerIdentity === undefined && verifyFull.ca !== undefined, 'verify-full: the CA and Node\'s check of the name')
  t.same(postgresClientConfig(`${BASE}?sslmode=verify-full`).ssl, { minVersion: 'TLSv1.2' }, 'verify-full without sslrootcert: Node\'s CAs')
  const system = postgresClientConfig(`${BASE}?sslmode=verify-full&sslrootcert=system`).ssl
  t.ok(system !== false && typeof system.ca === 'string', 'sslrootcert=system: the system\'s CAs')
  const socket = postgresClientConfig(`${BASE}?host=%2Frun%2Fpostgresql&sslmode=verify-full&sslrootcert=${ca}`)
  t.same(socket.ssl, false, 'a Unix socket: no TLS, as libpq ignores sslmode there')
  t.equal(new pg.Client(socket).host, '/run/postgresql', 'and the socket kept')
  t.same(postgresClientConfig('postgres://tessera@%2Frun%2Fpostgresql/tessera?sslmode=require').ssl, false, 'the socket as the host')
  t.same(databaseTls(`${BASE}?host=%2Frun%2Fpostgresql&sslmode=require`), { mode: 'require', verified: true }, 'and no warning: nothing crosses a network')
  const withCert = postgresClientConfig(`${BASE}?sslmode=verify-full&sslrootcert=${ca}&sslcert=${ca}&sslkey=${key}`).ssl
  t.ok(withCert !== false && withCert.cert !== undefined && withCert.key !== undefined, 'a client certificate and its key')
  t.notMatch(JSON.stringify(withCert), /PRIVATE KEY/, 'the key is not printed with the options')
})

t.test('pg is handed the URL without its TLS parameters, the rest as it was', async (t) => {
  const url = `${BASE}?sslmode=verify-full&sslrootcert=${ca}&application_name=a%20b&sslnegotiation=postgres&options=-c%20geqo%3Doff`
  const { connectionString } = postgresClientConfig(url)
  t.notMatch(connectionString, /ssl/, 'no sslmode for pg to warn of or read its own way')
  // What pg makes of it, with Tessera's ssl beside it.
  const client = new pg.Client(postgresClientConfig(url))
  t.match(client, { user: 'tessera', password: 's@cret', host: 'db.example', port: 5432, database: 'tessera' })
  t.match((client as unknown as { connectionParameters: object }).connectionParameters, { application_name: 'a b', options: '-c geqo=off' })
  t.match(client.ssl, { ca: /BEGIN CERTIFICATE/ }, 'Tessera\'s TLS settings, not pg\'s reading of the URL')
})

t.test('a socket is the host pg connects to: the last non-empty ?host=, else the URL\'s host', async (t) => {
  const cases: Array<[string, string]> = [
    // pg, as libpq, takes the last host= given: a socket first and a network host after is the network.
    [`${BASE}?host=%2Frun%2Fpostgresql&host=db.internal&sslmode=verify-full&sslrootcert=${ca}`, 'db.internal'],
    [`${BASE}?host=db.internal&host=%2Frun%2Fpostgresql&sslmode=verify-full&sslrootcert=${ca}`, '/run/postgresql'],
    // A socket as the URL's host, and a network host in ?host=, which pg connects to.
    [`postgres://tessera@%2Frun%2Fpostgresql/tessera?host=db.internal&sslmode=verify-full&sslrootcert=${ca}`, 'db.internal'],
    // An empty host= is none: pg takes the URL's.
    [`postgres://tessera@%2Frun%2Fpostgresql/tessera?host=&sslmode=verify-full&sslrootcert=${ca}`, '/run/postgresql'],
    [`${BASE}?host=&sslmode=verify-full&sslrootcert=${ca}`, 'db.example']
  ]
  for (const [url, host] of cases) {
    const config = postgresClientConfig(url)
    const client = new pg.Client(config)
    t.equal(client.host, host, `${url}: pg connects to ${host}`)
    if (host.startsWith('/')) t.equal(config.ssl, false, `${url}: a socket, no TLS`)
    else t.match(config.ssl, { ca: /BEGIN CERTIFICATE/ }, `${url}: over the network, verify-full as written`)
  }
  const over = 'postgres://tessera@%2Frun%2Fpostgresql/tessera?host=db.internal&sslmode=require'
  t.same(databaseTls(over), { mode: 'require', verified: false }, 'require to a network host is warned of, whatever the URL\'s host')
})

t.test('pg reads no TLS setting of its own from the environment', async (t) => {
  const saved = process.env.PGSSLNEGOTIATION
  process.env.PGSSLNEGOTIATION = 'direct'
  t.teardown(() => { if (saved === undefined) delete process.env.PGSSLNEGOTIATION; else process.env.PGSSLNEGOTIATION = saved })
  for (const query of ['', `?sslmode=verify-full&sslrootcert=${ca}`]) {
    // pg 8 took PGSSLNEGOTIATION: direct TLS, which Postgres before 17 does not answer, and with sslmode unset a refusal to connect at all.
    const client = new pg.Client(postgresClientConfig(`${BASE}${query}`))
    t.equal((client as unknown as { connectionParameters: { sslnegotiation: string } }).connectionParameters.sslnegotiation, 'postgres', query)
  }
})

t.test('what cannot be honoured is refused with one line, never the password', async (t) => {
  const refused: Array<[string, RegExp]> = [
    ['sslmode=prefer', /^DATABASE_URL's sslmode=prefer is not supported: Tessera never falls back to a connection without TLS/],
    ['sslmode=allow', /^DATABASE_URL's sslmode=allow is not supported/],
    ['sslmode=no-verify', /^DATABASE_URL's sslmode=no-verify is not supported: it is node-postgres's own; sslmode=require means the same/],
    ['sslmode=verify_full', /^DATABASE_URL's sslmode="verify_full" is invalid: expected disable, require, verify-ca or verify-full$/],
    ['sslmode=verify-ca', /^DATABASE_URL's sslmode=verify-ca needs sslrootcert/],
    ['sslmode=require&sslrootcert=system', /^DATABASE_URL's sslrootcert=system takes sslmode=verify-full, not require/],
    [`sslrootcert=${ca}`, /^DATABASE_URL has sslrootcert but no sslmode: add sslmode=verify-full/],
    ['ssl=true', /^DATABASE_URL's ssl= is node-postgres's own parameter: use sslmode=/],
    ['uselibpqcompat=true&sslmode=require', /^DATABASE_URL's uselibpqcompat= is node-postgres's own parameter/],
    ['sslmode=require&sslnegotiation=direct', /^DATABASE_URL's sslnegotiation=direct is not supported: Tessera asks for TLS as every Postgres answers it \(direct TLS needs Postgres 17\); use postgres$/],
    [`sslmode=verify-full&sslcert=${ca}`, /^DATABASE_URL has one of sslcert and sslkey: a client certificate takes both$/],
    [`sslmode=verify-full&sslrootcert=${dir}/missing.pem`, /^DATABASE_URL's sslrootcert ".*missing\.pem" cannot be read \(ENOENT\)$/],
    [`sslmode=verify-full&sslrootcert=${dir}`, /^DATABASE_URL's sslrootcert ".*" cannot be read \(EISDIR\)$/],
    [`sslmode=verify-full&sslrootcert=${key}`, /^DATABASE_URL's sslrootcert ".*client\.key" holds no PEM certificate$/],
    [`sslmode=verify-full&sslcert=${ca}&sslkey=${ca}`, /^DATABASE_URL's sslkey ".*ca\.pem" holds no PEM private key$/],
    // libpq takes the last of a parameter given twice, node-postgres too; Tessera took the first: refused, not guessed.
    [`sslmode=disable&sslmode=verify-full&sslrootcert=${ca}`, /^DATABASE_URL gives sslmode more than once: keep one$/],
    [`sslmode=verify-full&sslrootcert=${ca}&sslrootcert=${key}`, /^DATABASE_URL gives sslrootcert more than once: keep one$/],
    // libpq refuses a parameter it does not know ("invalid URI query parameter"); node-postgres ignored it, and the URL connected without TLS.
    ['SSLMODE=verify-full', /^DATABASE_URL's SSLMODE= is not read: parameter names are lower case \(sslmode=\)$/],
    [`sslMode=verify-full&sslrootcert=${ca}`, /^DATABASE_URL's sslMode= is not read: parameter names are lower case \(sslmode=\)$/],
    ['SSL=true', /^DATABASE_URL's SSL= is not read: parameter names are lower case \(ssl=\)$/]
  ]
  for (const [query, message] of refused) {
    const url = `${BASE}?${query}`
    t.throws(() => postgresClientConfig(url), DatabaseUrlError, query)
    t.throws(() => databaseTls(url), { message }, query)
    // At start, as any bad setting: a ConfigError, one line, printed before exiting 1.
    t.throws(() => loadConfig({ DATABASE_URL: url }), { name: 'ConfigError', message }, `${query}: at start`)
    t.notMatch((() => { try { databaseTls(url) } catch (err) { return (err as Error).message } return '' })(), /s@cret|s%40cret/, `${query}: no password`)
  }
})

t.test('the start warns only of a connection that checks no certificate', async (t) => {
  t.equal(loadConfig({ DATABASE_URL: `${BASE}?sslmode=require` }).unverifiedDatabaseTls, true)
  for (const query of ['', '?sslmode=disable', `?sslmode=require&sslrootcert=${ca}`, `?sslmode=verify-ca&sslrootcert=${ca}`, '?sslmode=verify-full']) {
    t.equal(loadConfig({ DATABASE_URL: `${BASE}${query}` }).unverifiedDatabaseTls, undefined, query)
  }
  t.same(databaseTls(`${BASE}?sslmode=require`), { mode: 'require', verified: false })
  t.same(databaseTls(`${BASE}?sslmode=verify-full`), { mode: 'verify-full', verified: true })
})

// A CA of its own and a CRL it signed, for what is read of sslcrl and sslcrldir (TLS itself: test/e2e/postgres-tls.test.ts).
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=crl test CA', '-keyout', `${dir}/crl-ca.key`, '-out', `${dir}/crl-ca.pem`], { stdio: ['ignore', 'ignore', 'pipe'] })
const crl = makeCrl(dir, 'crl', { cert: `${dir}/crl-ca.pem`, key: `${dir}/crl-ca.key` })
const crlDir = `${dir}/crls`
mkdirSync(crlDir)
copyFileSync(crl, `${crlDir}/${hashedCrlName(crl)}`)
const unhashedDir = `${dir}/unhashed-crls`
mkdirSync(unhashedDir)
copyFileSync(crl, `${unhashedDir}/crl.pem`)
// A client key encrypted with a passphrase, made now (no key is committed).
const PASSPHRASE = 'key passphrase 7'
const encryptedKey = `${dir}/client-encrypted.key`
writeFileSync(encryptedKey, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: PASSPHRASE }))
const VERIFIED = `sslmode=verify-full&sslrootcert=${ca}`

t.test('sslcrl and sslcrldir: the CRLs checked with the server\'s certificate, as libpq checks them', async (t) => {
  const fromFile = postgresClientConfig(`${BASE}?${VERIFIED}&sslcrl=${crl}`)
  t.match(fromFile.ssl, { crl: [/BEGIN X509 CRL/] }, 'sslcrl: the file\'s CRL handed to TLS')
  t.notMatch(fromFile.connectionString, /crl/, 'and not to pg, which ignored it')
  t.match(postgresClientConfig(`${BASE}?${VERIFIED}&sslcrldir=${crlDir}`).ssl, { crl: [/BEGIN X509 CRL/] }, 'sslcrldir: the CRLs OpenSSL would look up there')
  t.equal((postgresClientConfig(`${BASE}?${VERIFIED}&sslcrl=${crl}&sslcrldir=${crlDir}`).ssl as { crl: string[] }).crl.length, 2, 'both, as libpq takes both')
  t.match(postgresClientConfig(`${BASE}?sslmode=require&sslrootcert=${ca}&sslcrl=${crl}`).ssl, { crl: [/BEGIN X509 CRL/] }, 'require with sslrootcert checks the certificate, and so the CRL')
})

t.test('a relative file name is read from the directory TESSERA_DATA_DIR is resolved from, not each process\'s own', async (t) => {
  // loadConfig's directory is not this test's working directory (services/auth), where none of these files is.
  const relative = 'sslmode=verify-full&sslrootcert=ca.pem&sslcert=./ca.pem&sslkey=client.key&sslcrl=crl.pem&sslcrldir=crls'
  const config = loadConfig({ DATABASE_URL: `${BASE}?${relative}&application_name=a+b%20c`, TESSERA_DATA_DIR: 'state' }, dir)
  t.equal(config.dataDir, `${dir}/state`)
  t.equal(config.databaseUrl, `${BASE}?sslmode=verify-full&sslrootcert=${dir}/ca.pem&sslcert=${dir}/ca.pem&sslkey=${dir}/client.key&sslcrl=${dir}/crl.pem&sslcrldir=${dir}/crls&application_name=a+b%20c`,
    'each made absolute from there; the rest of the URL as it was (a + is still a +)')
  const ssl = postgresClientConfig(config.databaseUrl ?? '').ssl
  t.match(ssl, { ca: /BEGIN CERTIFICATE/, cert: /BEGIN CERTIFICATE/, crl: [/BEGIN X509 CRL/, /BEGIN X509 CRL/] }, 'so every process handed the URL (workers, the listener) reads the same files')
  t.equal(postgresClientConfig(config.databaseUrl ?? '').application_name, 'a+b c')
  t.throws(() => loadConfig({ DATABASE_URL: `${BASE}?sslmode=verify-full&sslrootcert=certs/ca.pem` }, '/srv'),
    { name: 'ConfigError', message: 'DATABASE_URL\'s sslrootcert "/srv/certs/ca.pem" cannot be read (ENOENT)' }, 'the refusal names where it looked')
  t.throws(() => loadConfig({ DATABASE_URL: `${BASE}?${VERIFIED}&sslcrldir=my%20crls` }, '/srv'),
    { message: 'DATABASE_URL\'s sslcrldir "/srv/my crls" cannot be read (ENOENT)' })
  for (const kept of ['sslmode=verify-full&sslrootcert=system', VERIFIED]) {
    t.equal(loadConfig({ DATABASE_URL: `${BASE}?${kept}` }, '/srv').databaseUrl, `${BASE}?${kept}`, `${kept}: as it was`)
  }
})

t.test('a CRL file of several CRLs: each one checked, as OpenSSL under libpq loads them all', async (t) => {
  // A TLS server whose certificate the CRL test CA signed, and revoked in its newer CRL; the older one, first in the file, revokes nothing.
  const crlCa = { cert: `${dir}/crl-ca.pem`, key: `${dir}/crl-ca.key` }
  writeFileSync(`${dir}/crl-server.ext`, 'subjectAltName=DNS:localhost\n')
  execFileSync('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', `${dir}/crl-server.key`, '-out', `${dir}/crl-server.csr`], { stdio: ['ignore', 'ignore', 'pipe'] })
  execFileSync('openssl', ['x509', '-req', '-in', `${dir}/crl-server.csr`, '-CA', crlCa.cert, '-CAkey', crlCa.key, '-CAcreateserial', '-days', '2', '-extfile', `${dir}/crl-server.ext`, '-out', `${dir}/crl-server.pem`], { stdio: ['ignore', 'ignore', 'pipe'] })
  const older = makeCrl(dir, 'older', crlCa, [], new Date(Date.now() - 3_600_000))
  const newer = makeCrl(dir, 'newer', crlCa, [`${dir}/crl-server.pem`])
  const bundle = `${dir}/older-then-newer.pem`
  writeFileSync(bundle, readFileSync(older, 'utf8') + readFileSync(newer, 'utf8'))
  const server = tls.createServer({ cert: readFileSync(`${dir}/crl-server.pem`), key: readFileSync(`${dir}/crl-server.key`) }, (socket) => socket.end())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const handshake = async (url: string): Promise<string> => await new Promise((resolve) => {
    const ssl = postgresClientConfig(url).ssl
    const socket = tls.connect({ ...(ssl === false ? {} : ssl), host: '127.0.0.1', servername: 'localhost', port: (server.address() as AddressInfo).port }, () => { socket.destroy(); resolve('connected') })
    socket.on('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? err.message) })
  })
  const verified = `${BASE}?sslmode=verify-full&sslrootcert=${crlCa.cert}`
  t.equal(await handshake(`${verified}&sslcrl=${older}`), 'connected', 'the older CRL alone: not revoked')
  t.equal(await handshake(`${verified}&sslcrl=${bundle}`), 'CERT_REVOKED', 'both in one file: the newer one read too, and it revokes the certificate')
  const crlBundleDir = `${dir}/crl-bundle-dir`
  mkdirSync(crlBundleDir)
  copyFileSync(bundle, `${crlBundleDir}/${hashedCrlName(older)}`)
  t.equal(await handshake(`${verified}&sslcrldir=${crlBundleDir}`), 'CERT_REVOKED', 'sslcrldir: each file\'s CRLs too')
  const cut = `${dir}/cut-short.pem`
  writeFileSync(cut, readFileSync(older, 'utf8') + readFileSync(newer, 'utf8').replace(/-----END X509 CRL-----\s*$/, ''))
  const refusal = ((): unknown => { try { databaseTls(`${verified}&sslcrl=${cut}`) } catch (err) { return (err as Error).message } })()
  t.equal(refusal, `DATABASE_URL's sslcrl ${JSON.stringify(cut)} holds a CRL Node cannot read (no END line)`, 'a CRL cut short is refused, not left out, and the file is named (a runtime refusal names nothing else)')
})

t.test('the URL read as libpq reads it where a URL parser differs: #, a bare %, a + in the query', async (t) => {
  for (const url of [`${BASE}#?sslmode=verify-full&sslrootcert=${ca}`, `${BASE}?sslmode=verify-full&sslrootcert=${ca}#&sslmode=disable`, 'postgres://tessera:s#cret@db.example/tessera']) {
    // libpq reads the # as text: the first URL is verify-full to psql, and no TLS to a URL parser, which ends the URL there.
    t.throws(() => databaseTls(url), { message: /^DATABASE_URL holds a #, which libpq reads as text and a URL as the start of a fragment that nothing reads: write it %23/ }, url)
  }
  // pg-connection-string re-encodes a URL with a bare %: the socket's %2F became text, and a host name connected to without TLS.
  const bare = 'postgres://tessera:s%cret@db.example/tessera?host=%2Frun%2Fpostgresql&sslmode=verify-full'
  t.throws(() => databaseTls(bare), { message: /^DATABASE_URL holds a % that is not followed by two hex digits, which libpq refuses: write it %25/ })
  for (const url of [`${BASE}#x`, bare]) t.notMatch((() => { try { databaseTls(url) } catch (err) { return (err as Error).message } return '' })(), /cret/, 'no password')
  // libpq reads a + in the query as a +: a CA's path, a key's passphrase, a password.
  const plusCa = `${dir}/ca+1.pem`
  copyFileSync(ca, plusCa)
  t.match(postgresClientConfig(`${BASE}?sslmode=verify-full&sslrootcert=${plusCa}`).ssl, { ca: /BEGIN CERTIFICATE/ }, 'sslrootcert=…/ca+1.pem is that file')
  const plusKey = `${dir}/client-plus.key`
  writeFileSync(plusKey, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'a+b/c=' }))
  t.match(postgresClientConfig(`${BASE}?${VERIFIED}&sslcert=${ca}&sslkey=${plusKey}&sslpassword=a+b/c=`).ssl, { cert: /BEGIN CERTIFICATE/ }, 'sslpassword=a+b/c= decrypts the key whose passphrase is a+b/c=')
  const client = new pg.Client(postgresClientConfig(`${BASE}?sslmode=require&password=p+q&application_name=a%20b+c`))
  t.equal(client.password, 'p+q', 'password=p+q is p+q to pg')
  t.match((client as unknown as { connectionParameters: object }).connectionParameters, { application_name: 'a b+c' }, '%20 a space, + a +')
  t.equal(new pg.Client(postgresClientConfig(`${BASE}?password=p+q`)).password, 'p+q', 'with no parameter read here too')
})

t.test('a password broken by an & or a ? left unwritten is not repeated by the refusal', async (t) => {
  for (const url of [
    `${BASE}?sslmode=require&password=Xy&Zq9tail`,
    `${BASE}?sslmode=require&sslpassword=Xy&Zq9tail`,
    'postgres://tessera:12345?Zq9tail@db.example/tessera',
    'postgres://tessera:12345?Zq9tail=x@db.example/tessera'
  ]) {
    t.throws(() => databaseTls(url), { message: /^DATABASE_URL has a parameter Tessera does not know, not repeated here: it may be part of a password \(write an & in a password as %26, a \? as %3F\)$/ }, url)
    t.throws(() => loadConfig({ DATABASE_URL: url }), { name: 'ConfigError', message: /not repeated here/ }, `${url}: at start`)
  }
  t.throws(() => databaseTls(`${BASE}?sslmode=require&schema=public`), { message: /^DATABASE_URL's schema= is not a connection parameter/ }, 'any other unknown name is named')
})

t.test('sslpassword decrypts sslkey at start; the passphrase goes nowhere else', async (t) => {
  const url = `${BASE}?${VERIFIED}&sslcert=${ca}&sslkey=${encryptedKey}&sslpassword=${encodeURIComponent(PASSPHRASE)}`
  const config = postgresClientConfig(url)
  const ssl = config.ssl as { key?: string }
  t.match(ssl.key, /^-----BEGIN PRIVATE KEY-----/, 'the key, decrypted')
  t.notMatch(JSON.stringify(config), /passphrase 7|key%20passphrase|PRIVATE KEY/, 'neither the passphrase nor the key printed with the options')
  t.notMatch(config.connectionString, /sslpassword/, 'nor handed to pg')
  t.same(databaseTls(url), { mode: 'verify-full', verified: true })
  t.match((postgresClientConfig(`${BASE}?${VERIFIED}&sslcert=${ca}&sslkey=${key}&sslpassword=unused`).ssl as { key?: string }).key, /PRIVATE KEY/, 'a key that is not encrypted: sslpassword unused, as libpq has it')
})

t.test('TLS versions, channel binding, keepalives and connect_timeout as libpq means them', async (t) => {
  t.match(postgresClientConfig(`${BASE}?${VERIFIED}&ssl_min_protocol_version=tlsv1.3`).ssl, { minVersion: 'TLSv1.3' }, 'ssl_min_protocol_version (libpq takes any case)')
  t.match(postgresClientConfig(`${BASE}?${VERIFIED}&ssl_max_protocol_version=TLSv1.2`).ssl, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }, 'ssl_max_protocol_version')
  t.match(postgresClientConfig(`${BASE}?${VERIFIED}&ssl_min_protocol_version=`).ssl, { minVersion: 'TLSv1.2' }, 'empty: libpq\'s default')
  t.equal(postgresClientConfig(`${BASE}?channel_binding=prefer`).enableChannelBinding, true, 'channel_binding=prefer: SCRAM-SHA-256-PLUS where offered')
  t.equal(postgresClientConfig(`${BASE}?channel_binding=disable`).enableChannelBinding, false)
  t.equal(postgresClientConfig(`${BASE}?keepalives=0`).keepAlive, false, 'keepalives=0')
  t.equal(postgresClientConfig(`${BASE}?keepalives=1&keepalives_idle=30`).keepAliveInitialDelayMillis, 30_000, 'keepalives_idle, in seconds')
  t.equal(postgresClientConfig(`${BASE}?keepalives_idle=32767`).keepAliveInitialDelayMillis, 32_767_000, 'up to what Linux takes')
  t.equal(postgresClientConfig(`${BASE}?connect_timeout=%2012`).connectionTimeoutMillis, 12_000, 'connect_timeout, in seconds')
  t.notOk('connectionTimeoutMillis' in postgresClientConfig(BASE), 'none given: the caller\'s own')
  // What the pools and the LISTEN connection are made with: pg read none of these from the URL.
  const { pool, close } = connect(`${BASE}?connect_timeout=12&keepalives_idle=30&channel_binding=prefer`)
  t.teardown(close)
  t.match(pool.options, { connectionTimeoutMillis: 12_000, keepAlive: true, keepAliveInitialDelayMillis: 30_000, enableChannelBinding: true }, 'the pool\'s connections')
  const defaults = connect(BASE)
  t.teardown(defaults.close)
  t.match(defaults.pool.options, { connectionTimeoutMillis: 5000, keepAlive: true }, 'without: Tessera\'s 5 s, libpq\'s keepalives')
  const plain = new pg.Client(postgresClientConfig(`${BASE}?${VERIFIED}&sslcertmode=allow&sslsni=1&sslcompression=0&gssencmode=prefer&target_session_attrs=any&load_balance_hosts=disable&min_protocol_version=3.0&max_protocol_version=latest&client_encoding=UTF8`))
  t.match(plain, { host: 'db.example', database: 'tessera', ssl: { ca: /BEGIN CERTIFICATE/ } }, 'libpq\'s defaults, written out, are what pg does anyway')
  t.same(postgresClientConfig(`${BASE}?${VERIFIED}&sslcert=${ca}&sslkey=${key}&sslcertmode=disable`).ssl, { ca: readCa(), minVersion: 'TLSv1.2' }, 'sslcertmode=disable: the client certificate never sent')
})

t.test('what pg reads as libpq does is handed to it', async (t) => {
  const client = new pg.Client(postgresClientConfig(`${BASE}?application_name=reports&fallback_application_name=tessera&options=-c%20work_mem%3D8MB&statement_timeout=1000&user=other&password=pw&port=6543`))
  t.match((client as unknown as { connectionParameters: object }).connectionParameters, { application_name: 'reports', fallback_application_name: 'tessera', options: '-c work_mem=8MB', statement_timeout: '1000' })
  t.match(client, { user: 'other', port: 6543 }, 'user= and port= over the URL\'s, as libpq takes them')
  // pg lets what it parses from the URL win over its options: the LISTEN connection's own name was the URL's.
  const listener = new pg.Client({ ...postgresClientConfig(`${BASE}?sslmode=require&application_name=reports`), application_name: 'tessera-listener' })
  t.equal((listener as unknown as { connectionParameters: { application_name: string } }).connectionParameters.application_name, 'tessera-listener', 'a caller\'s own application_name over the URL\'s')
})

t.test('every other parameter of libpq\'s is refused at start with one line saying what to do', async (t) => {
  const refused: Array<[string, RegExp]> = [
    ['sslmode=', /^DATABASE_URL's sslmode="" is invalid: expected disable, require, verify-ca or verify-full$/],
    [`sslcrl=${crl}`, /^DATABASE_URL has sslcrl but no sslmode: add sslmode=verify-full/],
    [`sslmode=require&sslcrl=${crl}`, /^DATABASE_URL's sslcrl is checked only with the certificate: use sslmode=verify-full/],
    [`sslmode=require&sslcrldir=${crlDir}`, /^DATABASE_URL's sslcrldir is checked only with the certificate/],
    [`${VERIFIED}&sslcrl=${ca}`, /^DATABASE_URL's sslcrl ".*ca\.pem" holds no PEM CRL$/],
    [`${VERIFIED}&sslcrl=${dir}/missing.pem`, /^DATABASE_URL's sslcrl ".*missing\.pem" cannot be read \(ENOENT\)$/],
    [`${VERIFIED}&sslcrldir=${unhashedDir}`, /^DATABASE_URL's sslcrldir ".*unhashed-crls" holds no CRL named as `openssl rehash` names them \(HASH\.r0\)$/],
    [`${VERIFIED}&sslcrldir=${dir}/missing`, /^DATABASE_URL's sslcrldir ".*missing" cannot be read \(ENOENT\)$/],
    [`${VERIFIED}&sslcert=${ca}&sslkey=${encryptedKey}`, /^DATABASE_URL's sslkey ".*client-encrypted\.key" is encrypted: give its passphrase as sslpassword$/],
    [`${VERIFIED}&sslcert=${ca}&sslkey=${encryptedKey}&sslpassword=wrong`, /^DATABASE_URL's sslpassword does not decrypt sslkey ".*client-encrypted\.key" \(/],
    [`${VERIFIED}&sslpassword=x`, /^DATABASE_URL has sslpassword but no sslkey/],
    [`${VERIFIED}&ssl_min_protocol_version=TLSv1.4`, /^DATABASE_URL's ssl_min_protocol_version="TLSv1.4" is invalid: expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3$/],
    [`${VERIFIED}&ssl_min_protocol_version=TLSv1.3&ssl_max_protocol_version=TLSv1.2`, /^DATABASE_URL's ssl_max_protocol_version=TLSv1.2 is below its minimum \(TLSv1.3\)/],
    ['sslmode=require&channel_binding=require', /^DATABASE_URL's channel_binding=require is not supported: node-postgres uses channel binding where the server offers it, but goes on without it .*; use disable or prefer$/],
    ['channel_binding=always', /^DATABASE_URL's channel_binding="always" is invalid: expected disable or prefer$/],
    ['connect_timeout=0', /^DATABASE_URL's connect_timeout=0 is not supported: libpq waits without end/],
    ['connect_timeout=10s', /^DATABASE_URL's connect_timeout="10s" is invalid: expected whole seconds/],
    ['keepalives=yes', /^DATABASE_URL's keepalives="yes" is invalid: expected 1 \(on\) or 0 \(off\)$/],
    ['keepalives_idle=-1', /^DATABASE_URL's keepalives_idle=-1 is invalid/],
    // libpq: "setsockopt(TCP_KEEPIDLE) failed: Invalid argument"; Node ignored the failure.
    ['keepalives_idle=32768', /^DATABASE_URL's keepalives_idle=32768 is not supported: the most the system takes is 32767 seconds$/],
    ['sslsni=0', /^DATABASE_URL's sslsni=0 is not supported: node-postgres always sends the host name/],
    ['sslcompression=1', /^DATABASE_URL's sslcompression=1 is not supported/],
    ['sslcertmode=require', /^DATABASE_URL's sslcertmode=require is not supported/],
    ['gssencmode=require', /^DATABASE_URL's gssencmode=require is not supported: node-postgres has no GSSAPI encryption/],
    ['target_session_attrs=read-write', /^DATABASE_URL's target_session_attrs=read-write is not supported: node-postgres does not check what the server is/],
    ['load_balance_hosts=random', /^DATABASE_URL's load_balance_hosts=random is not supported/],
    ['min_protocol_version=3.2', /^DATABASE_URL's min_protocol_version=3.2 is not supported: node-postgres speaks protocol 3.0/],
    ['max_protocol_version=4', /^DATABASE_URL's max_protocol_version="4" is invalid/],
    ['client_encoding=LATIN1', /^DATABASE_URL's client_encoding="LATIN1" is not supported: Tessera's connections are always UTF8/],
    ['host=db1.example,db2.example', /^DATABASE_URL's host= names more than one host/],
    ['application_name=a&application_name=b', /^DATABASE_URL gives application_name more than once: keep one$/],
    ['statment_timeout=5', /^DATABASE_URL's statment_timeout= is not a connection parameter Tessera knows \(libpq would refuse it too\): remove it$/],
    ['Channel_Binding=require', /^DATABASE_URL's Channel_Binding= is not read: parameter names are lower case \(channel_binding=\)$/],
    ...[
      'hostaddr', 'dbname', 'service', 'passfile', 'require_auth', 'requirepeer', 'keepalives_interval', 'keepalives_count', 'tcp_user_timeout',
      'replication', 'krbsrvname', 'gsslib', 'gssdelegation', 'sslkeylogfile', 'scram_client_key', 'scram_server_key',
      'oauth_issuer', 'oauth_client_id', 'oauth_client_secret', 'oauth_scope'
    ].map((name): [string, RegExp] => [`${name}=x`, new RegExp(`^DATABASE_URL's ${name}= (is not supported|is not read by node-postgres): `)])
  ]
  for (const [query, message] of refused) {
    const url = `${BASE}?${query}`
    t.throws(() => postgresClientConfig(url), DatabaseUrlError, query)
    t.throws(() => databaseTls(url), { message }, query)
    t.throws(() => loadConfig({ DATABASE_URL: url }), { name: 'ConfigError', message }, `${query}: at start`)
    const said = (() => { try { databaseTls(url) } catch (err) { return (err as Error).message } return '' })()
    t.notMatch(said, /s@cret|s%40cret|\n/, `${query}: one line, no password`)
  }
  t.throws(() => postgresClientConfig('postgres://tessera@db1.example,db2.example/tessera'), { message: /^DATABASE_URL names more than one host/ }, 'a host list as the URL\'s host')
})

t.test('every parameter libpq 18 knows is known here: honoured or refused, none passed over', async (t) => {
  // PostgreSQL 18's libpq, "Parameter Key Words" (fe-connect.c, PQconninfoOptions).
  const LIBPQ = [
    'host', 'hostaddr', 'port', 'dbname', 'user', 'password', 'passfile', 'require_auth', 'channel_binding', 'connect_timeout',
    'client_encoding', 'options', 'application_name', 'fallback_application_name', 'keepalives', 'keepalives_idle',
    'keepalives_interval', 'keepalives_count', 'tcp_user_timeout', 'replication', 'gssencmode', 'sslmode', 'sslnegotiation',
    'sslcompression', 'sslcert', 'sslkey', 'sslkeylogfile', 'sslpassword', 'sslcertmode', 'sslrootcert', 'sslcrl', 'sslcrldir',
    'sslsni', 'requirepeer', 'ssl_min_protocol_version', 'ssl_max_protocol_version', 'min_protocol_version', 'max_protocol_version',
    'krbsrvname', 'gsslib', 'gssdelegation', 'scram_client_key', 'scram_server_key', 'service', 'target_session_attrs',
    'load_balance_hosts', 'oauth_issuer', 'oauth_client_id', 'oauth_client_secret', 'oauth_scope'
  ]
  for (const name of LIBPQ) {
    const said = (() => { try { databaseTls(`${BASE}?${name}=x`) } catch (err) { return (err as Error).message } return '' })()
    t.notMatch(said, /is not a connection parameter Tessera knows|parameter names are lower case/, `${name}: ${said === '' ? 'taken' : said}`)
  }
})

t.test('each new connection reads the TLS files again, as libpq does; one that fails them fails that connection alone', async (t) => {
  t.equal(tlsReadingClient(BASE), pg.Client, 'no TLS: nothing to read, pg\'s own Client')
  t.equal(tlsReadingClient(`${BASE}?host=%2Frun%2Fpostgresql&${VERIFIED}`), pg.Client, 'a Unix socket: the same')
  const live = `${dir}/live`
  mkdirSync(live)
  const liveCa = `${live}/ca.pem`
  const liveKey = `${live}/client.key`
  writeFileSync(liveCa, readCa())
  copyFileSync(encryptedKey, liveKey)
  const url = `${BASE}?sslmode=verify-full&sslrootcert=${liveCa}&sslcert=${liveCa}&sslkey=${liveKey}&sslpassword=${encodeURIComponent(PASSPHRASE)}`
  const Client = tlsReadingClient(url)
  const settings = postgresClientConfig(url)
  const pool = new pg.Pool({ ...settings, Client, connectionTimeoutMillis: 2000 })
  const first = new Client(settings)
  t.match(first.ssl, { ca: readCa(), cert: readCa(), key: /^-----BEGIN PRIVATE KEY-----/ }, 'read as the start reads them, the key decrypted')
  const rotatedCa = readCa().replace('MIIB', 'MIIC')
  writeFileSync(liveCa, rotatedCa)
  t.match(new Client(settings).ssl, { ca: rotatedCa }, 'the next client reads the file as it is now')
  t.match(first.ssl, { ca: readCa() }, 'one made before keeps what it read')

  rmSync(liveKey)
  const unreadable = new Client(settings)
  const err: unknown = await unreadable.connect().then(() => undefined, (err: unknown) => err)
  t.match(err, { code: 'ERR_DATABASE_TLS_FILE', message: `DATABASE_URL's sslkey "${liveKey}" cannot be read (ENOENT)` }, 'the start\'s line, from connect (the constructor does not throw)')
  t.ok(isDatabaseUnavailable(err), 'the database out of reach: a request answers 503')
  t.equal(databaseUnreachable(err), `DATABASE_URL's sslkey "${liveKey}" cannot be read (ENOENT)`, 'a command prints the line alone')
  const byCallback = await new Promise<Error>((resolve) => { new Client(settings).connect(resolve) })
  t.match(byCallback, { code: 'ERR_DATABASE_TLS_FILE' }, 'and to a callback, as pg-pool connects')

  writeFileSync(liveKey, '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n')
  const refused: unknown = await pool.connect().then(() => undefined, (err: unknown) => err)
  t.match(refused, { code: 'ERR_DATABASE_TLS_FILE', message: /^DATABASE_URL's sslkey ".*live\/client\.key" is not a private key Node can read|^DATABASE_URL's sslpassword does not decrypt sslkey/ }, 'a pool\'s new connection fails with it')
  t.notMatch(String((refused as Error).message), /key passphrase 7|MIIB/, 'naming neither the passphrase nor the key')
  copyFileSync(encryptedKey, liveKey)
  t.equal(pool.totalCount, 0, 'no connection left behind')
  // A certificate and key caught mid-rotation (one replaced, not yet the other): Node refuses the pair as it makes the connection's TLS context.
  const mismatch: unknown = (() => { try { tls.createSecureContext({ cert: readFileSync(`${dir}/crl-ca.pem`), key: readFileSync(key) }) } catch (err) { return err } })()
  t.ok(isDatabaseUnavailable(mismatch), 'a key that is not the certificate\'s: out of reach, 503')
  t.match(databaseUnreachable(mismatch), /^cannot connect to the database over TLS: DATABASE_URL's sslcert and sslkey are not a pair \(ERR_OSSL_X509_KEY_VALUES_MISMATCH: /)
  await pool.end()
})

/**
 * DATABASE_URL's TLS parameters read with libpq's meanings (db/tls.ts); the
 * connections themselves, against a Postgres that takes only TLS, are
 * test/e2e/postgres-tls.test.ts's.
 */
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import pg from 'pg'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { databaseTls, DatabaseUrlError, postgresClientConfig } from '../../src/db/tls.js'
import { tempDir } from '../helpers/gateway.js'

const dir = tempDir(t, 'db-tls')
// Only their markers are read here: TLS reads the rest when it connects.
const ca = `${dir}/ca.pem`
writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
const key = `${dir}/client.key`
// A key made now: no private key, real or stub, is committed.
writeFileSync(key, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }))
const BASE = 'postgres://tessera:s%40cret@db.example:5432/tessera'

t.test('each sslmode as libpq has it', async (t) => {
  t.same(postgresClientConfig(BASE), { connectionString: BASE, ssl: false, sslnegotiation: 'postgres' }, 'no sslmode: no TLS, and pg\'s PGSSLMODE and PGSSLNEGOTIATION not read (both are set)')
  t.same(postgresClientConfig(`${BASE}?sslmode=disable`).ssl, false)
  t.same(postgresClientConfig(`${BASE}?sslmode=require`).ssl, { rejectUnauthorized: false }, 'require: encrypted, no certificate checked')
  const requireWithCa = postgresClientConfig(`${BASE}?sslmode=require&sslrootcert=${ca}`).ssl
  t.match(requireWithCa, { ca: /BEGIN CERTIFICATE/ }, 'require with sslrootcert: the CA checked')
  t.notOk(requireWithCa !== false && 'rejectUnauthorized' in requireWithCa, 'so certificates are verified')
  t.equal(requireWithCa !== false && requireWithCa.checkServerIdentity?.('db.example', {} as never), undefined, '…but not the host name (as verify-ca)')
  const verifyCa = postgresClientConfig(`${BASE}?sslmode=verify-ca&sslrootcert=${ca}`).ssl
  t.ok(verifyCa !== false && typeof verifyCa.checkServerIdentity === 'function' && verifyCa.ca !== undefined, 'verify-ca: the CA, not the name')
  const verifyFull = postgresClientConfig(`${BASE}?sslmode=verify-full&sslrootcert=${ca}`).ssl
  t.ok(verifyFull !== false && verifyFull.checkServerIdentity === undefined && verifyFull.ca !== undefined, 'verify-full: the CA and Node\'s check of the name')
  t.same(postgresClientConfig(`${BASE}?sslmode=verify-full`).ssl, {}, 'verify-full without sslrootcert: Node\'s CAs')
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
    ['sslmode=require&sslnegotiation=direct', /^DATABASE_URL's sslnegotiation="direct" is not supported/],
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

import t from 'tap'
import { readFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import pg from 'pg'
import { ConfigError } from '../src/config.js'
import { ClientRuleError } from '../src/clients/register.js'
import { StartupError } from '../src/cluster/startup.js'
import { RoleNameError } from '../src/db/roles.js'
import { databaseUnreachable, DrfError, InvalidTokenError, isDatabaseUnavailable, loggedError, OAuthError, ProblemError, RefreshReuseError, SessionEndedError, TesseraError } from '../src/errors.js'
import { WrongKekError } from '../src/keys/kek.js'
import { UnknownKeyError } from '../src/keys/revoke-key.js'
import { SameKekError } from '../src/keys/rewrap.js'
import { buildTestApp } from './helpers/app.js'

// CliError, ImportFileError, RemoteOverloaded and PeerGone are left out: loading their modules here would
// count code only the spawned CLI and cluster tests run against the coverage of this process.
t.test('every error Tessera throws shares one base and names its kind in a code of its own', async (t) => {
  const cause = new Error('underneath')
  const errors = [
    new OAuthError('invalid_grant', 'refused', { cause }),
    new RefreshReuseError(),
    new SessionEndedError(),
    new ProblemError(409, 'Conflict', { publicDetail: 'taken' }),
    new InvalidTokenError('expired'),
    new DrfError(401, { detail: 'no' }),
    new ConfigError('TESSERA_X', 'a number', 'abc'),
    new WrongKekError('kid-1'),
    new SameKekError(),
    new UnknownKeyError('kid-2'),
    new ClientRuleError('client_id: bad'),
    new RoleNameError('role name: bad'),
    new StartupError('port taken', { cause })
  ]
  for (const err of errors) {
    t.ok(err instanceof TesseraError, `${err.constructor.name} is a TesseraError`)
    t.equal(err.name, err.constructor.name, `${err.constructor.name} names itself`)
    t.match(err.code, /^ERR_[A-Z_]+$/, `${err.constructor.name} has a code`)
  }
  t.equal(new Set(errors.map((err) => err.code)).size, errors.length, 'no two kinds share a code')
  t.equal(errors[0]?.cause, cause, 'the cause is kept')
  t.equal(new RefreshReuseError().error, 'invalid_grant', 'a reuse is still invalid_grant on the wire')
  t.same([new SessionEndedError().error, new SessionEndedError().description], [new RefreshReuseError().error, new RefreshReuseError().description],
    'a token of an ended session reads on the wire as any refused refresh token')
})

t.test('a refusal answered to a client captures no stack (its log line has its code and detail, never one); every other error keeps its stack, and a refusal\'s cause keeps its own', async (t) => {
  const limit = Error.stackTraceLimit
  t.ok(limit > 0, 'frames are captured to begin with')
  const cause = new Error('underneath')
  const refusals = [new OAuthError('temporarily_unavailable', 'shed', { cause }), new RefreshReuseError(), new ProblemError(409, 'Conflict'), new InvalidTokenError('expired'), new DrfError(401, { detail: 'no' })]
  for (const err of refusals) t.equal(err.stack, `${err.name}: ${err.message}`, `${err.name}: its first line only`)
  t.match(refusals[0]?.cause, { stack: /\n\s+at / }, 'the cause keeps its frames')
  t.equal(Error.stackTraceLimit, limit, 'the limit is as it was before the refusals were made')
  t.match(new StartupError('port taken').stack, /^StartupError: port taken\n\s+at /, 'a StartupError, logged with its stack, has it')
  t.match(new Error('plain').stack, /\n\s+at /, 'and errors made after one have their frames')
})

t.test("a ProblemError's detail is logged, its publicDetail is what the client reads", async (t) => {
  const { app, logs } = await buildTestApp(t)
  app.get('/refused', async () => {
    throw new ProblemError(403, 'Forbidden', { publicDetail: 'not yours', detail: 'session 42 belongs to another user' })
  })
  const res = await app.inject({ method: 'GET', url: '/refused' })
  t.equal(res.statusCode, 403)
  t.match(res.json(), { title: 'Forbidden', status: 403, detail: 'not yours' })
  t.notMatch(res.body, /session 42/, 'the logged detail is not sent')
  t.match(logs(), /session 42 belongs to another user/, 'it is logged')
})

/** What pg really throws when it cannot reach `url`. */
async function connectionError (url: string): Promise<unknown> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (err) {
    return err
  } finally {
    await client.end().catch(() => {})
  }
  throw new Error(`connected to ${url}`)
}

/** A loopback port that was free a moment ago: nothing listens on it. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

t.test('a database that is stopped or unreachable is unavailable (503), not a fault: the errors pg really throws', async (t) => {
  // A stopped Postgres removes its socket file: a client of the socket URL (the embedded default) meets ENOENT.
  const noSocket = await connectionError(`postgres://tessera@127.0.0.1:5432/tessera?host=${encodeURIComponent('/nonexistent-tessera-socket-dir')}`)
  t.match(noSocket, { code: 'ENOENT', syscall: 'connect' })
  t.ok(isDatabaseUnavailable(noSocket), 'no socket file')
  const refused = await connectionError(`postgres://tessera@127.0.0.1:${await closedPort()}/tessera`)
  t.match(refused, { code: 'ECONNREFUSED' })
  t.ok(isDatabaseUnavailable(refused), 'nothing listening on the port')
  // A server that goes away mid-conversation (a crash, a dropped link): it accepts, then closes.
  const closing = createServer((socket) => socket.destroy())
  await new Promise<void>((resolve) => closing.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { closing.close() })
  const lost = await connectionError(`postgres://tessera@127.0.0.1:${(closing.address() as AddressInfo).port}/tessera`)
  t.match(lost, { message: 'Connection terminated unexpectedly' })
  t.ok(isDatabaseUnavailable(lost), 'the connection lost')
  // A database host name that stops resolving under a running instance (a DNS record moved in a failover): RFC 2606's .invalid never resolves.
  const unresolved = await connectionError('postgres://tessera@db.invalid:5432/tessera')
  t.match(unresolved, { code: 'ENOTFOUND' })
  t.ok(isDatabaseUnavailable(unresolved), 'a host name that does not resolve')
  for (const code of ['28P01', '28000', '3D000']) {
    t.ok(isDatabaseUnavailable(Object.assign(new Error('what Postgres said'), { code })), `${code}: Postgres refusing a new connection (a rotated password, pg_hba.conf, a dropped database) is 503 too`)
  }

  const missingFile = await readFile('/nonexistent-tessera-file').catch((err: unknown) => err)
  t.match(missingFile, { code: 'ENOENT' })
  t.notOk(isDatabaseUnavailable(missingFile), 'a missing file is not the database: still a fault')
  t.notOk(isDatabaseUnavailable(new Error('boom')))
  t.notOk(isDatabaseUnavailable('ECONNREFUSED'), 'only errors')

  // What a start-up or a command prints: the same cases, and Postgres refusing the login or the database.
  t.equal(databaseUnreachable(noSocket), `cannot reach the database: ${(noSocket as Error).message}`)
  t.equal(databaseUnreachable(refused), `cannot reach the database: ${(refused as Error).message}`)
  t.equal(databaseUnreachable(Object.assign(new Error('password authentication failed for user "tessera"'), { code: '28P01' })), 'the database refused the connection: password authentication failed for user "tessera"', 'reached, and refused: not "cannot reach"')
  t.equal(databaseUnreachable(Object.assign(new Error('database "nosuchdb" does not exist'), { code: '3D000' })), 'the database refused the connection: database "nosuchdb" does not exist')
  t.equal(databaseUnreachable(Object.assign(new Error('getaddrinfo ENOTFOUND db.invalid'), { code: 'ENOTFOUND' })), 'cannot reach the database: getaddrinfo ENOTFOUND db.invalid', 'a name that does not resolve')
  t.equal(databaseUnreachable(missingFile), undefined, 'anything else keeps its own message')
  for (const code of ['53100', '40P01', '25006', '57014']) {
    const reached = Object.assign(new Error('what Postgres said'), { code })
    t.ok(isDatabaseUnavailable(reached), `${code}: a request is answered 503`)
    t.equal(databaseUnreachable(reached), undefined, `${code}: Postgres was reached, and a command prints its own words`)
  }
  t.equal(databaseUnreachable(Object.assign(new Error('sorry, too many clients already'), { code: '53300' })), 'cannot reach the database: sorry, too many clients already', 'too many connections: the connection itself was refused')
})

t.test('a connection TLS did not let through is the database out of reach, told by which setting to look at (test/e2e/postgres-tls.test.ts meets each for real)', async (t) => {
  const tls = (code: string | undefined, message: string): Error => Object.assign(new Error(message), code === undefined ? {} : { code })
  const untrusted = tls('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate')
  t.ok(isDatabaseUnavailable(untrusted), 'a certificate from a CA not trusted: 503 under a running instance')
  t.equal(databaseUnreachable(untrusted), 'cannot connect to the database over TLS: its certificate is not signed by a CA that DATABASE_URL trusts (its sslrootcert; without one, Node\'s public CAs) (UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate)')
  for (const code of ['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY']) {
    t.match(databaseUnreachable(tls(code, 'what Node said')), /is not signed by a CA that DATABASE_URL trusts/, code)
  }
  t.equal(databaseUnreachable(tls('CERT_HAS_EXPIRED', 'certificate has expired')), 'cannot connect to the database over TLS: its certificate was refused (CERT_HAS_EXPIRED: certificate has expired)')
  const noCrl = tls('UNABLE_TO_GET_CRL', 'unable to get certificate CRL')
  t.ok(isDatabaseUnavailable(noCrl), 'DATABASE_URL\'s CRLs missing the CA\'s under a running instance: 503, not a 500')
  t.equal(databaseUnreachable(noCrl), 'cannot connect to the database over TLS: DATABASE_URL\'s CRLs (sslcrl, sslcrldir) cannot tell whether its certificate is revoked (UNABLE_TO_GET_CRL: unable to get certificate CRL); give a current CRL of every CA in its chain')
  t.match(databaseUnreachable(tls('CRL_HAS_EXPIRED', 'CRL has expired')), /cannot tell whether its certificate is revoked \(CRL_HAS_EXPIRED: /)
  t.match(databaseUnreachable(tls('ERR_TLS_CERT_ALTNAME_INVALID', 'Hostname/IP does not match certificate\'s altnames')), /does not name the host DATABASE_URL connects to .*; connect by a name it holds, or use sslmode=verify-ca$/)
  const off = tls(undefined, 'The server does not support SSL connections')
  t.ok(isDatabaseUnavailable(off), 'ssl turned off under a running instance: 503')
  t.match(databaseUnreachable(off), /^cannot connect to the database over TLS: The server does not support SSL connections \(its ssl is off/)
  t.match(databaseUnreachable(tls('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'tlsv1 alert unknown ca')), /^cannot connect to the database over TLS: the handshake failed \(ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: /)
  t.equal(databaseUnreachable(tls('28000', 'no pg_hba.conf entry for host "10.0.0.5", user "tessera", database "tessera", no encryption')),
    'the database refused the connection: no pg_hba.conf entry for host "10.0.0.5", user "tessera", database "tessera", no encryption; it takes this connection only over TLS: set sslmode in DATABASE_URL (docs/operators.md, "Postgres over TLS")')
  t.equal(databaseUnreachable(tls('28000', 'no pg_hba.conf entry for host "10.0.0.5", user "tessera", database "tessera", SSL encryption')),
    'the database refused the connection: no pg_hba.conf entry for host "10.0.0.5", user "tessera", database "tessera", SSL encryption', 'refused over TLS: nothing to add')
  t.same(loggedError(untrusted), { db_error: { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', message: 'unable to verify the first certificate' } }, 'logged by its code and words, no stack')
})

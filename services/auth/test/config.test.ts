import t from 'tap'
import proxyAddr from '@fastify/proxy-addr'
import { ConfigError, loadConfig, minimumPublishLead, parseDuration } from '../src/config.js'
import { execFileSync } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

t.test('durations accept 300, 300s, 5m, 1h, 30d', async (t) => {
  t.equal(parseDuration('300'), 300)
  t.equal(parseDuration('300s'), 300)
  t.equal(parseDuration('5m'), 300)
  t.equal(parseDuration('1h'), 3600)
  t.equal(parseDuration('30d'), 2592000)
  t.equal(parseDuration('abc'), undefined)
  t.equal(parseDuration('5 m'), undefined)
  t.equal(parseDuration('-5m'), undefined)
  t.equal(parseDuration('36500d'), 36_500 * 86_400, 'a hundred years')
  t.equal(parseDuration('36501d'), undefined, 'longer is refused: a date it is added to can leave what JavaScript and Postgres hold')
  t.equal(parseDuration('999999999d'), undefined)
})

t.test('a duration past a hundred years, and an interval past what a Node timer waits, stop the start with one line', async (t) => {
  t.throws(() => loadConfig({ TESSERA_AUDIT_RETENTION: '999999999d' }, '/srv'), { name: 'ConfigError', message: 'TESSERA_AUDIT_RETENTION="999999999d" is invalid: expected a duration such as 300, 300s, 5m, 1h or 30d, at most 36500d, above 0' })
  t.throws(() => loadConfig({ TESSERA_CLEANUP_INTERVAL: '25d' }, '/srv'), { message: 'TESSERA_CLEANUP_INTERVAL="25d" is invalid: expected a duration such as 30, 30s, 10m or 1h, above 0 and at most 24d (the longest a Node timer waits)' })
  t.throws(() => loadConfig({ TESSERA_KEY_CHECK_INTERVAL: '30d' }, '/srv'), { message: /^TESSERA_KEY_CHECK_INTERVAL="30d" is invalid: expected .* at most 24d/ })
  t.throws(() => loadConfig({ TESSERA_CLEANUP_INTERVAL: '0' }, '/srv'), { message: /^TESSERA_CLEANUP_INTERVAL="0" is invalid: expected a duration such as 30, 30s, 10m or 1h, above 0 and at most 24d/ }, 'the interval\'s own bounds, for 0 too')
  t.throws(() => loadConfig({ TESSERA_ACCESS_TTL: '0' }, '/srv'), { message: /, above 0$/ })
  t.equal(loadConfig({ TESSERA_CLEANUP_INTERVAL: '24d', TESSERA_KEY_PUBLISH_LEAD: '25d' }, '/srv').cleanupInterval, 24 * 86_400)
})

t.test('a login back-off longer than a year stops the start: past about 68 years every attempt on a blocked name answered 500', async (t) => {
  t.throws(() => loadConfig({ TESSERA_LOGIN_BACKOFF_MAX: '36500d' }, '/srv'), { name: 'ConfigError', message: 'TESSERA_LOGIN_BACKOFF_MAX="36500d" is invalid: expected a duration such as 15m, 1h or 1d, above 0 and at most 365d (a longer block is a lockout)' })
  t.throws(() => loadConfig({ TESSERA_LOGIN_BACKOFF_MAX: '366d' }, '/srv'), { name: 'ConfigError' })
  t.equal(loadConfig({ TESSERA_LOGIN_BACKOFF_MAX: '365d' }, '/srv').loginBackoffMax, 365 * 86_400)
})

t.test('a JWKS max-age whose default publish lead is past the longest duration is refused by its own name', async (t) => {
  for (const value of ['18251d', '20000d', '36500d']) {
    t.throws(() => loadConfig({ TESSERA_JWKS_MAX_AGE: value }, '/srv'), { name: 'ConfigError', message: `TESSERA_JWKS_MAX_AGE="${value}" is invalid: expected a duration such as 300, 5m or 1h, above 0 and at most 18250d (the publish lead is at least this and by default twice it, at most 36500d)` })
  }
  const longest = loadConfig({ TESSERA_JWKS_MAX_AGE: '18250d', TESSERA_KEY_CHECK_INTERVAL: '24d' }, '/srv')
  t.equal(longest.keyPublishLead, 36_500 * 86_400, 'the longest max-age still has its default lead')
  t.equal(loadConfig({ TESSERA_JWKS_MAX_AGE: '999999999' }, '/srv').keyPublishLead, 1_999_999_998, 'a default lead of more than nine digits of seconds')
  t.equal(loadConfig({ TESSERA_JWKS_MAX_AGE: '1m', TESSERA_KEY_PUBLISH_LEAD: '' }, '/srv').keyPublishLead, 120, 'an empty lead is an unset one: the default')
})

t.test('the default client\'s id is not shaped like a user id: its client_credentials tokens would carry it as sub', async (t) => {
  t.throws(() => loadConfig({ TESSERA_DEFAULT_CLIENT_ID: '0b8e1f7a-5c3d-4e2f-9a1b-2c3d4e5f6a7b' }, '/srv'), { message: /^TESSERA_DEFAULT_CLIENT_ID="0b8e1f7a-5c3d-4e2f-9a1b-2c3d4e5f6a7b" is invalid: expected 1 to 64 of A-Z a-z 0-9 \. _ -, not shaped like a UUID/ })
  t.equal(loadConfig({ TESSERA_DEFAULT_CLIENT_ID: 'web-app' }, '/srv').defaultClientId, 'web-app')
})

t.test('the default client\'s id names no actor of the audit trail: refused as the setting, not later as "failed to start" naming no variable', async (t) => {
  for (const id of ['system', 'Operator', 'ANONYMOUS']) {
    t.throws(() => loadConfig({ TESSERA_DEFAULT_CLIENT_ID: id }, '/srv'), { message: `TESSERA_DEFAULT_CLIENT_ID=${JSON.stringify(id)} is invalid: expected 1 to 64 of A-Z a-z 0-9 . _ -, not shaped like a UUID, and not operator, system or anonymous (the audit trail's own actors)` }, id)
  }
  t.equal(loadConfig({ TESSERA_DEFAULT_CLIENT_ID: 'systems' }, '/srv').defaultClientId, 'systems')
})

t.test('defaults follow DESIGN', async (t) => {
  const config = loadConfig({}, '/srv')
  t.equal(config.port, 8080)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.databaseUrl, undefined)
  t.equal(config.issuer, 'http://127.0.0.1:8080')
  t.same(config.audience, ['api'])
  t.equal(config.accessTtl, 300)
  t.equal(config.refreshTtl, 30 * 86400)
  t.equal(config.sessionMax, 90 * 86400)
  t.equal(config.refreshGrace, 10)
  t.equal(config.jwksMaxAge, 300)
  t.equal(config.keyPublishLead, 600, 'twice the JWKS max-age')
  t.equal(config.keyRotation, 30 * 86400)
  t.equal(config.keyBits, 2048)
  t.equal(config.kek, undefined)
  t.equal(config.signup, 'open')
  t.same(config.trustProxy, [])
  t.equal(config.dataDir, '/srv/.data')
  t.equal(config.dbStatementTimeoutMs, 10_000, 'a request\'s statement: 10 s, under the 30 s a client waits')
})

t.test('values are parsed', async (t) => {
  const config = loadConfig({
    PORT: '9000',
    TESSERA_AUDIENCE: 'api,notes',
    TESSERA_KEY_ROTATION: 'off',
    TESSERA_KEY_BITS: '4096',
    TESSERA_KEK: Buffer.alloc(32, 7).toString('base64url'),
    TESSERA_TRUST_PROXY: '127.0.0.1, 10.0.0.0/8',
    TESSERA_ISSUER: 'https://auth.example.com/',
    TESSERA_JWKS_MAX_AGE: '1s'
  })
  t.equal(config.port, 9000)
  t.same(config.audience, ['api', 'notes'])
  t.equal(config.keyRotation, null)
  t.equal(config.keyBits, 4096)
  t.equal(config.kek?.length, 32)
  t.same(config.trustProxy, ['127.0.0.1', '10.0.0.0/8'])
  t.equal(config.issuer, 'https://auth.example.com', 'trailing slash dropped')
  t.equal(config.keyPublishLead, 33, 'twice a 1 s max-age is too short: the minimum, 1 s + 30 s key check + 2 s')
})

t.test('the publish lead covers the verifier, the gateway and the key reload', async (t) => {
  t.equal(minimumPublishLead({ jwksMaxAge: 300, keyCheckInterval: 30 }), 332)
  const settings = { TESSERA_JWKS_MAX_AGE: '2s', TESSERA_KEY_CHECK_INTERVAL: '1s' }
  t.equal(loadConfig(settings).keyPublishLead, 5, 'the default is never below the minimum')
  t.equal(loadConfig({ ...settings, TESSERA_KEY_PUBLISH_LEAD: '5s' }).keyPublishLead, 5, 'the minimum itself is accepted')
  const err = t.throws(() => loadConfig({ ...settings, TESSERA_KEY_PUBLISH_LEAD: '4s' })) as Error
  t.ok(err instanceof ConfigError)
  t.equal(err.message, 'TESSERA_KEY_PUBLISH_LEAD="4s" is invalid: expected at least 5s: TESSERA_JWKS_MAX_AGE (2s) + ' +
    'TESSERA_KEY_CHECK_INTERVAL (1s) + 2s the gateway may keep its copy')
  t.throws(() => loadConfig({ TESSERA_JWKS_MAX_AGE: '10m', TESSERA_KEY_PUBLISH_LEAD: '10m' }), /^TESSERA_KEY_PUBLISH_LEAD="10m" is invalid: expected at least 632s/,
    'a lead no longer than the max-age is refused')
})

t.test('TESSERA_AUDIENCE may not name the issuer, the audience of refresh tokens, so a sibling checking iss and aud alone still refuses one', async (t) => {
  const issuer = { TESSERA_ISSUER: 'https://auth.example.com/' }
  for (const audience of ['https://auth.example.com', 'api,https://auth.example.com']) {
    t.throws(() => loadConfig({ ...issuer, TESSERA_AUDIENCE: audience }), {
      constructor: ConfigError,
      message: `TESSERA_AUDIENCE=${JSON.stringify(audience)} is invalid: expected comma-separated audience names other than the issuer https://auth.example.com, which is the audience of refresh tokens`
    }, audience)
  }
  t.same(loadConfig({ ...issuer, TESSERA_AUDIENCE: 'api,https://auth.example.com/v1' }).audience, ['api', 'https://auth.example.com/v1'], 'a URL under the issuer is another audience')
  t.throws(() => loadConfig({ TESSERA_AUDIENCE: 'http://127.0.0.1:8080' }), ConfigError, 'the default issuer too')
})

const BAD: Array<[string, string]> = [
  ['PORT', '70000'], ['PORT', 'http'], ['HOST', 'a b'], ['DATABASE_URL', 'mysql://x'],
  ['TESSERA_ISSUER', 'ftp://x'], ['TESSERA_ISSUER', 'http://x/?a=b'], ['TESSERA_AUDIENCE', 'a,,b'],
  ['TESSERA_ACCESS_TTL', 'abc'], ['TESSERA_ACCESS_TTL', '0'], ['TESSERA_REFRESH_TTL', '5 days'], ['TESSERA_SESSION_MAX', '1y'],
  ['TESSERA_REFRESH_GRACE', '-1'], ['TESSERA_JWKS_MAX_AGE', '5x'], ['TESSERA_KEY_PUBLISH_LEAD', 'soon'],
  ['TESSERA_KEY_ROTATION', 'never'], ['TESSERA_KEY_BITS', '1024'], ['TESSERA_KEK', 'short'],
  ['TESSERA_SIGNUP', 'maybe'], ['TESSERA_TRUST_PROXY', 'gateway.local'], ['LOG_LEVEL', 'loud'],
  ['TESSERA_SCOPES', 'a "b"'], ['TESSERA_SCOPES', 'read,write'], ['TESSERA_SCOPES', `read ${'w'.repeat(1020)}`], ['TESSERA_HASH_CONCURRENCY', '0'], ['TESSERA_HASH_QUEUE_DEPTH', 'x'],
  ['TESSERA_DB_STATEMENT_TIMEOUT_MS', '25001'], ['TESSERA_DB_STATEMENT_TIMEOUT_MS', '10s']
]

for (const [name, value] of BAD) {
  t.test(`${name}=${value} is refused with one line naming it`, async (t) => {
    const err = t.throws(() => loadConfig({ [name]: value })) as unknown
    t.ok(err instanceof ConfigError)
    const message = (err as Error).message
    t.match(message, new RegExp(`^${name}=`))
    t.match(message, /expected /)
    t.notMatch(message, /\n/)
  })
}

t.test('TESSERA_TRUST_PROXY: only addresses and ranges that are ones, each checked', async (t) => {
  for (const bad of ['999.1.1.1', '1.2.3', '10.0.0.0/33', '::1/129', '10.0.0.1/8/8', '10.0.0.0/x', '127.0.0.1,,gateway', ',', 'fe80::1%eth0', '0.0.0.0/0', '::/0']) {
    const err = t.throws(() => loadConfig({ TESSERA_TRUST_PROXY: bad })) as Error
    t.ok(err instanceof ConfigError, bad)
    t.match(err.message, /^TESSERA_TRUST_PROXY=.* expected comma-separated IP addresses or CIDR ranges such as 10\.0\.0\.0\/8$/, bad)
  }
  const accepted = loadConfig({ TESSERA_TRUST_PROXY: '127.0.0.1, 10.0.0.0/8, ::1, fd00::/8, 192.168.1.0/24, 10.0.0.1/32,' }).trustProxy
  t.same(accepted, ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8', '192.168.1.0/24', '10.0.0.1/32'])
  t.doesNotThrow(() => proxyAddr.compile(accepted), 'each one the proxy matcher the app compiles at start takes')
})

t.test('a default issuer on another port than the instance\'s is marked, to be warned of at start', async (t) => {
  t.equal(loadConfig({ PORT: '9090' }).defaultIssuerElsewhere, 9090)
  t.equal(loadConfig({ PORT: '9090', TESSERA_ISSUER: 'https://auth.example' }).defaultIssuerElsewhere, undefined, 'an issuer given')
  t.equal(loadConfig({}).defaultIssuerElsewhere, undefined, 'the default port, which the default issuer names')
  t.equal(loadConfig({ PORT: '0' }).defaultIssuerElsewhere, undefined, 'a port the system picks')
  const production = { NODE_ENV: 'production', TESSERA_KEK: 'a'.repeat(43) }
  t.equal(loadConfig({ ...production, TESSERA_ISSUER: 'http://auth.example.com' }).plainHttpIssuer, true, 'plain http to another host, in production')
  for (const issuer of ['https://auth.example.com', 'http://127.0.0.1:8080', 'http://localhost:8080', 'http://[::1]:8080']) {
    t.equal(loadConfig({ ...production, TESSERA_ISSUER: issuer }).plainHttpIssuer, undefined, `not ${issuer}`)
  }
  t.equal(loadConfig({ TESSERA_ISSUER: 'http://auth.example.com' }).plainHttpIssuer, undefined, 'nor outside production')
})

t.test('TESSERA_KEY_ROTATION: its message names off beside the durations', async (t) => {
  const err = t.throws(() => loadConfig({ TESSERA_KEY_ROTATION: 'never' })) as Error
  t.match(err.message, /; or off$/)
  t.equal(loadConfig({ TESSERA_KEY_ROTATION: 'off' }).keyRotation, null)
})

t.test('a refused DATABASE_URL is not repeated: it may hold a password', async (t) => {
  const err = t.throws(() => loadConfig({ DATABASE_URL: 'mysql://tessera:s3cret-pw@db/tessera' })) as Error
  t.match(err.message, /^DATABASE_URL="<hidden>" is invalid: expected a postgres/)
  t.notMatch(err.message, /s3cret-pw/)
})

t.test('DATABASE_URL\'s port= (which pg takes over the URL\'s port) is a port number, checked at start', async (t) => {
  // pg passed port=abc or port=99999 to the socket, which threw where nothing caught it: the server and every command exited 0, printing nothing.
  for (const port of ['abc', '99999', '0', '5432abc', '-1']) {
    t.throws(() => loadConfig({ DATABASE_URL: `postgres://tessera:s3cret-pw@db/tessera?port=${port}` }),
      { name: 'ConfigError', message: `DATABASE_URL's port=${JSON.stringify(port)} is invalid: expected a port number, 1 to 65535` }, port)
  }
  for (const url of ['postgres://db/tessera?port=5433', 'postgres://db:5433/tessera?port=']) {
    t.equal(loadConfig({ DATABASE_URL: url }).databaseUrl, url, `${url}: taken (an empty port= is none)`)
  }
  // pg and libpq read the last port=, a reader the first: refused, as any parameter given twice (db/tls.ts).
  t.throws(() => loadConfig({ DATABASE_URL: 'postgres://db/tessera?port=5432&port=5433' }), { name: 'ConfigError', message: 'DATABASE_URL gives port more than once: keep one' })
})

t.test('a TESSERA_ISSUER holding a user name or password is not repeated, whatever else is wrong with it', async (t) => {
  // The check of its shape (scheme, query, fragment) came first and quoted the whole value, password included.
  for (const issuer of ['https://auth:s3cret-pw@auth.example.com', 'https://auth:s3cret-pw@auth.example.com/?tenant=a', 'https://auth:s3cret-pw@auth.example.com#x', 'ftp://auth:s3cret-pw@auth.example.com']) {
    const err = t.throws(() => loadConfig({ TESSERA_ISSUER: issuer })) as Error
    t.equal(err.message, 'TESSERA_ISSUER="<hidden>" is invalid: expected an http(s) URL without query or fragment, with no user name or password', issuer)
  }
})

t.test('production loads without a KEK: only what touches private halves asks for it (resolveKek)', async (t) => {
  t.equal(loadConfig({ NODE_ENV: 'production' }).kek, undefined)
})

t.test('any setting can come from NAME_FILE, never from both NAME and NAME_FILE', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-secrets-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const kek = Buffer.alloc(32, 9)
  await fs.writeFile(path.join(dir, 'kek'), `${kek.toString('base64url')}\n`)
  await fs.writeFile(path.join(dir, 'url'), 'postgres://tessera:s3cret@db:5432/tessera\n')
  const fromFiles = loadConfig({ TESSERA_KEK_FILE: path.join(dir, 'kek'), DATABASE_URL_FILE: path.join(dir, 'url') })
  t.same(fromFiles.kek, kek, 'the KEK from its file, the trailing newline dropped')
  t.equal(fromFiles.databaseUrl, 'postgres://tessera:s3cret@db:5432/tessera')
  await fs.writeFile(path.join(dir, 'ttl'), '2m')
  t.equal(loadConfig({ TESSERA_ACCESS_TTL_FILE: path.join(dir, 'ttl') }).accessTtl, 120, 'the pattern is generic')

  for (const name of ['TESSERA_KEK', 'DATABASE_URL']) {
    const both = t.throws(() => loadConfig({ [name]: 'x', [`${name}_FILE`]: path.join(dir, 'kek') })) as Error
    t.ok(both instanceof ConfigError)
    t.equal(both.message, `${name} and ${name}_FILE are both set: set only one of them`)
  }
  const missing = t.throws(() => loadConfig({ TESSERA_KEK_FILE: path.join(dir, 'nope') })) as Error
  t.equal(missing.message, `TESSERA_KEK_FILE=${JSON.stringify(path.join(dir, 'nope'))} cannot be read (ENOENT)`)
})

t.test('a relative NAME_FILE is read from the directory a relative TESSERA_DATA_DIR and sslrootcert are, not the process\'s', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-secrets-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  t.not(process.cwd(), dir, 'the process runs elsewhere')
  await fs.mkdir(path.join(dir, 'secrets'))
  const kek = Buffer.alloc(32, 7)
  await fs.writeFile(path.join(dir, 'secrets', 'kek'), `${kek.toString('base64url')}\n`)
  await fs.writeFile(path.join(dir, 'secrets', 'url'), 'postgres://tessera:s3cret@db:5432/tessera?sslmode=verify-full&sslrootcert=secrets/ca.pem\n')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=ca', '-days', '1', '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'secrets', 'ca.pem')], { stdio: 'ignore' })
  const config = loadConfig({ TESSERA_KEK_FILE: 'secrets/kek', DATABASE_URL_FILE: 'secrets/url', TESSERA_DATA_DIR: 'data' }, dir)
  t.same(config.kek, kek)
  t.equal(config.dataDir, path.join(dir, 'data'))
  t.match(config.databaseUrl, `sslrootcert=${path.join(dir, 'secrets', 'ca.pem')}`, 'the URL\'s file from the same directory as the file holding it')
  const missing = t.throws(() => loadConfig({ TESSERA_KEK_FILE: 'secrets/nope' }, dir)) as Error
  t.equal(missing.message, `TESSERA_KEK_FILE=${JSON.stringify(path.join(dir, 'secrets', 'nope'))} cannot be read (ENOENT)`, 'the refusal names the whole path it tried')
})

t.test('NODE_ENV_FILE is refused, not ignored: NODE_ENV is read as is, and a file meant to say production would run the instance as outside it', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-node-env-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  await fs.writeFile(path.join(dir, 'node_env'), 'production\n')
  for (const env of [{ NODE_ENV_FILE: path.join(dir, 'node_env') }, { NODE_ENV: 'production', NODE_ENV_FILE: path.join(dir, 'node_env') }]) {
    const err = t.throws(() => loadConfig(env)) as Error
    t.ok(err instanceof ConfigError)
    t.equal(err.message, 'NODE_ENV_FILE is not read: NODE_ENV is Node\'s and its libraries\', read from the environment alone; set NODE_ENV (production in production) and unset NODE_ENV_FILE')
  }
  t.equal(loadConfig({ NODE_ENV: 'production', NODE_ENV_FILE: '' }).production, true, 'an empty NODE_ENV_FILE counts as unset, as every empty setting does')
})

t.test('a DATABASE_URL that is no URL because of a password\'s # / ? or @ says to percent-encode it, without repeating it', async (t) => {
  // Generated passwords (a managed Postgres's, a secrets manager's) hold these; the refusal said only "a postgres:// URL", which the operator had written.
  for (const password of ['ab#cd', 'ab/cd', 'ab?cd', 'ab:c/d']) {
    const err = t.throws(() => loadConfig({ DATABASE_URL: `postgres://tessera_app:${password}@db.internal:5432/tessera` })) as Error
    t.ok(err instanceof ConfigError, password)
    t.equal(err.message, 'DATABASE_URL="<hidden>" is invalid: expected a postgres:// or postgresql:// URL, its user name and password percent-encoded (encodeURIComponent: # as %23, / as %2F, ? as %3F, @ as %40, : as %3A, % as %25)', password)
  }
  const encoded = `postgres://tessera_app:${encodeURIComponent('ab#c/d?e@f:g%')}@db.internal:5432/tessera`
  t.equal(loadConfig({ DATABASE_URL: encoded }).databaseUrl, encoded, 'percent-encoded, it is taken')
})

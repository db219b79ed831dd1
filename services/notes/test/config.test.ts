import t from 'tap'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ConfigError, loadConfig } from '../src/config.js'

t.test('DATABASE_URL from DATABASE_URL_FILE (a Docker secret), never from both', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'notes-secrets-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const file = path.join(dir, 'database_url')
  await fs.writeFile(file, 'postgres://notes:s3cret@db:5432/tessera\n')
  t.equal(loadConfig({ DATABASE_URL_FILE: file }).databaseUrl, 'postgres://notes:s3cret@db:5432/tessera')
  const both = t.throws(() => loadConfig({ DATABASE_URL: 'postgres://x@db/y', DATABASE_URL_FILE: file })) as Error
  t.ok(both instanceof ConfigError)
  t.equal(both.message, 'DATABASE_URL and DATABASE_URL_FILE are both set: set only one of them')
  const missing = t.throws(() => loadConfig({ DATABASE_URL_FILE: path.join(dir, 'nope') })) as Error
  t.match(missing.message, /^DATABASE_URL_FILE=".*nope" cannot be read \(ENOENT\)$/)
  // A password with an unescaped "/" makes the URL unparseable: the refusal must not print it.
  const unparsed = t.throws(() => loadConfig({ DATABASE_URL: 'postgres://notes:se/cr3t@db:5432/notes' })) as Error
  t.equal(unparsed.message, 'DATABASE_URL=<hidden> is invalid: expected a URL, its user name and password percent-encoded (encodeURIComponent: # as %23, / as %2F, ? as %3F, @ as %40, : as %3A, % as %25)')
})

t.test('a NOTES_ISSUER or NOTES_JWKS_URL holding a user name or password is not repeated, whatever else is wrong with it', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  // The check of its scheme and query came first and quoted the whole value, password included.
  for (const [name, value, rule] of [
    ['NOTES_ISSUER', 'https://id:s3cret-pw@id.example/?tenant=a', 'an http(s) URL without query or fragment'],
    ['NOTES_ISSUER', 'ftp://id:s3cret-pw@id.example', 'an http(s) URL without query or fragment'],
    ['NOTES_JWKS_URL', 'ftp://keys:s3cret-pw@keys.example/jwks.json', 'an http(s) URL']
  ] as const) {
    t.throws(() => loadConfig({ ...base, [name]: value }), new ConfigError(`${name}=<hidden> is invalid: expected ${rule}, with no user name or password (fetch refuses a URL holding credentials)`), value)
  }
})

t.test('LOG_LEVEL is one of pino\'s levels, or one line says what it takes', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  t.equal(loadConfig(base).logLevel, 'info')
  t.equal(loadConfig({ ...base, LOG_LEVEL: 'warn' }).logLevel, 'warn')
  t.throws(() => loadConfig({ ...base, LOG_LEVEL: 'verbose' }), new ConfigError('LOG_LEVEL="verbose" is invalid: expected one of fatal, error, warn, info, debug, trace, silent'))
})

t.test('NOTES_LOG_BUFFER_KB is 64 KiB to 1 GiB of unread log lines, 4 MiB unless set', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  t.equal(loadConfig(base).logBufferBytes, 4 * 1024 * 1024)
  t.equal(loadConfig({ ...base, NOTES_LOG_BUFFER_KB: '64' }).logBufferBytes, 64 * 1024)
  t.equal(loadConfig({ ...base, NOTES_LOG_BUFFER_KB: '1048576' }).logBufferBytes, 1024 * 1024 * 1024)
  for (const value of ['63', '1048577', '4M']) {
    t.throws(() => loadConfig({ ...base, NOTES_LOG_BUFFER_KB: value }), new ConfigError(`NOTES_LOG_BUFFER_KB="${value}" is invalid: expected a whole number from 64 to 1048576`))
  }
})

t.test('NOTES_ISSUER is compared as Tessera writes iss: spelled as given, only trailing slashes dropped', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  t.equal(loadConfig({ ...base, NOTES_ISSUER: 'https://ID.Example:443/' }).issuer, 'https://ID.Example:443', 'not new URL()\'s spelling (https://id.example), which no token would carry')
  t.equal(loadConfig({ ...base, NOTES_ISSUER: 'https://ID.Example:443/' }).jwksUrl, 'https://id.example/.well-known/jwks.json', 'the URL fetched is the same place however spelled')
  t.throws(() => loadConfig({ ...base, NOTES_ISSUER: 'not a url' }), new ConfigError('NOTES_ISSUER="not a url" is invalid: expected a URL'))
})

t.test('NOTES_ISSUER and NOTES_JWKS_URL are http(s) URLs, as Tessera\'s issuer is: anything else stops the start in one line', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  // A file: or ftp: URL passed, and notes served every request a 503 (no fetch can succeed) or a 401 (no token carries that iss).
  t.throws(() => loadConfig({ ...base, NOTES_JWKS_URL: 'file:///etc/jwks.json' }), new ConfigError('NOTES_JWKS_URL="file:///etc/jwks.json" is invalid: expected an http(s) URL'))
  t.throws(() => loadConfig({ ...base, NOTES_ISSUER: 'ftp://id.example' }), new ConfigError('NOTES_ISSUER="ftp://id.example" is invalid: expected an http(s) URL without query or fragment'))
  t.throws(() => loadConfig({ ...base, NOTES_ISSUER: 'id.example:443' }), new ConfigError('NOTES_ISSUER="id.example:443" is invalid: expected an http(s) URL without query or fragment'), 'a host and port parse as a URL of scheme id.example')
  t.throws(() => loadConfig({ ...base, NOTES_ISSUER: 'https://id.example/?tenant=a' }), /NOTES_ISSUER="https:\/\/id.example\/\?tenant=a" is invalid/, 'Tessera refuses a query in its issuer: no iss would carry one')
  t.equal(loadConfig({ ...base, NOTES_ISSUER: 'HTTPS://id.example' }).jwksUrl, 'https://id.example/.well-known/jwks.json')
  t.equal(loadConfig({ ...base, NOTES_JWKS_URL: 'http://nginx:8443/.well-known/jwks.json' }).jwksUrl, 'http://nginx:8443/.well-known/jwks.json')
})

t.test('NOTES_CLOCK_SKEW is at most 60 s, as docs/integrators.md says: Tessera keeps a key published only 60 s past its last token\'s exp', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  t.equal(loadConfig(base).clockSkewMs, 30_000)
  t.equal(loadConfig({ ...base, NOTES_CLOCK_SKEW: '60' }).clockSkewMs, 60_000)
  t.throws(() => loadConfig({ ...base, NOTES_CLOCK_SKEW: '61' }), new ConfigError('NOTES_CLOCK_SKEW="61" is invalid: expected a whole number from 0 to 60'))
  t.throws(() => loadConfig({ ...base, NOTES_CLOCK_SKEW: '300' }), new ConfigError('NOTES_CLOCK_SKEW="300" is invalid: expected a whole number from 0 to 60'))
})

t.test('NOTES_JWKS_TTL is at most 300 s, Tessera\'s default JWKS max-age: a day-old copy would trust a revoked key for a day', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  t.equal(loadConfig(base).jwksTtlMs, 300_000)
  t.equal(loadConfig({ ...base, NOTES_JWKS_TTL: '1' }).jwksTtlMs, 1000)
  t.throws(() => loadConfig({ ...base, NOTES_JWKS_TTL: '301' }), new ConfigError('NOTES_JWKS_TTL="301" is invalid: expected a whole number from 1 to 300'))
  t.throws(() => loadConfig({ ...base, NOTES_JWKS_TTL: '86400' }), new ConfigError('NOTES_JWKS_TTL="86400" is invalid: expected a whole number from 1 to 300'))
})

t.test('NOTES_JWKS_COOLDOWN is at most NOTES_JWKS_TTL: after a failed fetch none is tried for the cooldown, and a stale copy verifies nothing', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  t.equal(loadConfig(base).jwksCooldownMs, 30_000)
  t.equal(loadConfig({ ...base, NOTES_JWKS_COOLDOWN: '300' }).jwksCooldownMs, 300_000, 'up to the default TTL')
  t.equal(loadConfig({ ...base, NOTES_JWKS_TTL: '10' }).jwksCooldownMs, 10_000, 'by default no longer than a shorter TTL')
  t.equal(loadConfig({ ...base, NOTES_JWKS_TTL: '10', NOTES_JWKS_COOLDOWN: '10' }).jwksCooldownMs, 10_000)
  const expected = (value: string, ttl: number): ConfigError => new ConfigError(`NOTES_JWKS_COOLDOWN="${value}" is invalid: expected at most NOTES_JWKS_TTL (${ttl}): after a failed fetch none is tried for the cooldown, and a JWKS older than NOTES_JWKS_TTL verifies no token`)
  t.throws(() => loadConfig({ ...base, NOTES_JWKS_TTL: '10', NOTES_JWKS_COOLDOWN: '11' }), expected('11', 10))
  t.throws(() => loadConfig({ ...base, NOTES_JWKS_TTL: '10', NOTES_JWKS_COOLDOWN: '30' }), expected('30', 10))
  t.throws(() => loadConfig({ ...base, NOTES_JWKS_COOLDOWN: '301' }), new ConfigError('NOTES_JWKS_COOLDOWN="301" is invalid: expected a whole number from 1 to 300'))
  t.throws(() => loadConfig({ ...base, NOTES_JWKS_COOLDOWN: '86400' }), new ConfigError('NOTES_JWKS_COOLDOWN="86400" is invalid: expected a whole number from 1 to 300'), 'a day: one failed fetch refused every token for a day')
  t.throws(() => loadConfig({ ...base, NOTES_JWKS_COOLDOWN: '0' }), new ConfigError('NOTES_JWKS_COOLDOWN="0" is invalid: expected a whole number from 1 to 300'))
})

t.test('a blank NOTES_AUDIENCE stops the start: fast-jwt checks aud only when given one, so tokens for any API passed', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'notes-audience-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  const file = path.join(dir, 'audience')
  await fs.writeFile(file, '\n')
  const expected = 'is invalid: expected one audience, without spaces or commas (the resource tokens for notes name in aud)'
  t.throws(() => loadConfig({ ...base, NOTES_AUDIENCE_FILE: file }), new ConfigError(`NOTES_AUDIENCE="" ${expected}`), 'an empty secret file')
  t.throws(() => loadConfig({ ...base, NOTES_AUDIENCE: ' ' }), new ConfigError(`NOTES_AUDIENCE=" " ${expected}`))
  t.throws(() => loadConfig({ ...base, NOTES_AUDIENCE: 'urn:a,urn:b' }), new ConfigError(`NOTES_AUDIENCE="urn:a,urn:b" ${expected}`), 'one audience: Tessera splits TESSERA_AUDIENCE at commas, so no aud holds one')
  t.equal(loadConfig({ ...base, NOTES_AUDIENCE: '' }).audience, 'urn:tessera:notes', 'an empty variable is unset, as every setting\'s is: the default')
  await fs.writeFile(file, 'api\n')
  t.equal(loadConfig({ ...base, NOTES_AUDIENCE_FILE: file }).audience, 'api')
})

t.test('HOST is an IP address or host name, as Tessera takes it, or one line names it', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  t.equal(loadConfig(base).host, '127.0.0.1')
  t.equal(loadConfig({ ...base, HOST: '::' }).host, '::')
  t.throws(() => loadConfig({ ...base, HOST: 'a b' }), new ConfigError('HOST="a b" is invalid: expected an IP address or host name'))
  t.throws(() => loadConfig({ ...base, HOST: 'http://0.0.0.0' }), new ConfigError('HOST="http://0.0.0.0" is invalid: expected an IP address or host name'))
})

t.test('NOTES_TRUST_PROXY takes addresses and CIDR ranges as TESSERA_TRUST_PROXY does, in its words; unset, no peer is trusted', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@db/y' }
  t.same(loadConfig(base).trustProxy, [], 'unset: none')
  t.same(loadConfig({ ...base, NOTES_TRUST_PROXY: '' }).trustProxy, [], 'empty: none')
  t.same(loadConfig({ ...base, NOTES_TRUST_PROXY: ' 172.28.5.10, 10.0.0.0/8,,::1, fd00::/8 ' }).trustProxy, ['172.28.5.10', '10.0.0.0/8', '::1', 'fd00::/8'])
  for (const value of ['gateway', '10.0.0.0/0', '10.0.0.0/33', '::/129', '10.0.0.0/8/8', '1.2.3', 'fe80::1%eth0', ' , ', '10.0.0.1/']) {
    t.throws(() => loadConfig({ ...base, NOTES_TRUST_PROXY: value }), new ConfigError(`NOTES_TRUST_PROXY=${JSON.stringify(value)} is invalid: expected comma-separated IP addresses or CIDR ranges such as 10.0.0.0/8`), value)
  }
})

/**
 * The whole topology, for real: Nginx (rendered from nginx/) terminating TLS
 * in front of two Tessera processes and the notes service, on one Postgres.
 */
import { execFile, spawnSync } from 'node:child_process'
import { createServer, get as httpGet, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort, request } from '@tessera/testkit'
import { connect as tlsConnect } from 'node:tls'
import t, { type Test } from 'tap'
import { createTestDatabase } from '../helpers/db.js'
import { PYTHON } from '../helpers/django.js'
import { makeCertificate, nginxBinary, notesRoutes, REPO_ROOT, startGateway, startNotes, tempDir, type Gateway, type Reply, type RequestOptions } from '../helpers/gateway.js'
import { killInstance, runCli, startServer } from '../helpers/server.js'
import { within } from '../helpers/http.js'

const PASSWORD = 'correct horse battery'

/**
 * Bytes as sent, over TLS: what no HTTP client library would send. Resolves
 * with everything the gateway answered. `halfClose: false` keeps the sending
 * side open until the gateway closes: for a request that is proxied, Nginx
 * reads a client's half-close as the client gone and drops the request.
 */
async function rawRequest (gateway: Gateway, bytes: string, { halfClose = true } = {}): Promise<string> {
  const { hostname, port } = new URL(gateway.origin)
  return await new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), ca: readFileSync(gateway.cert) }, () => { halfClose ? socket.end(bytes) : socket.write(bytes) })
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.on('error', reject)
  })
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Picks the access-log line of the request answered with `reply` (the gateway's X-Request-Id is the line's request_id). */
const loggedAs = (reply: Reply) => (line: string): boolean => (JSON.parse(line) as { request_id?: string }).request_id === String(reply.headers['x-request-id'])

t.test('nginx and dclint are present and the configuration is valid', async (t) => {
  t.ok(nginxBinary(), 'nginx found (the test fails, not skips, without it)')
  const dclint = spawnSync(join(REPO_ROOT, 'node_modules/.bin/dclint'), ['--max-warnings', '0', 'docker-compose.yml'], { cwd: REPO_ROOT, encoding: 'utf8' })
  t.equal(dclint.status, 0, `dclint docker-compose.yml: ${dclint.stdout}${dclint.stderr}`)
})

t.test('scripts/tls-cert.sh: a server certificate that is no CA; an old one of its own made again, anyone else\'s left alone', async (t) => {
  const openssl = (...args: string[]): string => spawnSync('openssl', args, { encoding: 'utf8' }).stdout
  const dir = tempDir(t, 'tls')
  const { cert, key } = makeCertificate(dir)
  t.match(openssl('x509', '-in', cert, '-noout', '-ext', 'basicConstraints'), /critical\s+CA:FALSE/, 'CA:FALSE: trusting it trusts no certificate signed with its key')
  t.match(openssl('x509', '-in', cert, '-noout', '-ext', 'extendedKeyUsage'), /TLS Web Server Authentication/)
  const made = readFileSync(cert, 'utf8')
  makeCertificate(dir)
  t.equal(readFileSync(cert, 'utf8'), made, 'kept while good')
  const old = (subject: string, extra: string[]): void => {
    spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '10', '-subj', subject, ...extra, '-keyout', key, '-out', cert])
  }
  old('/CN=tessera-gateway', ['-addext', 'basicConstraints=critical,CA:TRUE'])
  makeCertificate(dir)
  t.match(openssl('x509', '-in', cert, '-noout', '-ext', 'basicConstraints'), /CA:FALSE/, 'one of its own that is a CA and expires within 30 days: made again')
  old('/CN=auth.example.com', [])
  const theirs = readFileSync(cert, 'utf8')
  makeCertificate(dir)
  t.equal(readFileSync(cert, 'utf8'), theirs, 'an operator\'s own certificate, expiring or not, is never replaced')
})

t.test('the template also renders with envsubst under a stock main file, as the official image does', async (t) => {
  const dir = tempDir(t, 'image')
  const tls = makeCertificate(join(dir, 'tls'))
  mkdirSync(join(dir, 'conf.d'))
  const env: Record<string, string> = {
    GATEWAY_BIND_ADDR: '127.0.0.1',
    GATEWAY_HTTP_PORT: String(await freePort()),
    GATEWAY_HTTPS_PORT: String(await freePort()),
    // docker-compose.yml names services here; `nginx -t` would resolve them, so loopback stands in.
    GATEWAY_AUTH_SERVERS: 'server 127.0.0.1:8101 max_fails=2 fail_timeout=10s;',
    GATEWAY_NOTES_SERVERS: 'server 127.0.0.1:8201 max_fails=2 fail_timeout=10s;',
    GATEWAY_TLS_CERT: tls.cert,
    GATEWAY_TLS_KEY: tls.key,
    GATEWAY_CACHE_DIR: join(dir, 'cache'),
    GATEWAY_ACCESS_LOG: join(dir, 'access.log'),
    GATEWAY_TOKEN_RATE: '10r/s',
    GATEWAY_TOKEN_BURST: '20',
    GATEWAY_SIGNUP_RATE: '2r/s',
    GATEWAY_SIGNUP_BURST: '10',
    GATEWAY_SIMPLEJWT_LOCATIONS: '',
    GATEWAY_SIMPLEJWT_REFUSAL_FORMAT: '',
    GATEWAY_SIMPLEJWT_ALLOWED_METHODS: ''
  }
  // Not set by docker-compose.yml itself: the .envsh it mounts into /docker-entrypoint.d/
  // exports it, from GATEWAY_TRUSTED_PROXIES (empty there; a CIDR here, so that the
  // realip directives meet the stock main file too), before the image runs envsubst.
  const sourced = spawnSync('sh', ['-c', 'set -e; . ./nginx/docker-entrypoint.d/19-tessera-trusted-proxies.envsh; printf "%s" "$GATEWAY_REAL_IP"'], { cwd: REPO_ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', GATEWAY_TRUSTED_PROXIES: '10.0.0.0/8' } })
  t.equal(sourced.status, 0, sourced.stderr)
  const fromEntrypoint = { GATEWAY_REAL_IP: sourced.stdout }
  const template = readFileSync(join(REPO_ROOT, 'nginx/templates/tessera.conf.template'), 'utf8')
  const names = [...Object.keys(env), ...Object.keys(fromEntrypoint)]
  t.same([...new Set(template.match(/\$\{[A-Z_]+\}/g))].sort(), names.map((k) => `\${${k}}`).sort(), 'every placeholder is one docker-compose.yml sets, or its .envsh')
  const compose = readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')
  for (const name of Object.keys(env)) t.match(compose, new RegExp(`\\b${name}:`), `docker-compose.yml sets ${name}`)
  const rendered = spawnSync('envsubst', [names.map((k) => `\${${k}}`).join(' ')], { input: template, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env, ...fromEntrypoint } })
  t.equal(rendered.status, 0, 'envsubst (gettext-base) ran')
  t.match(rendered.stdout, '\nset_real_ip_from 10.0.0.0/8;\nreal_ip_header X-Forwarded-For;\nreal_ip_recursive on;\nlimit_req_zone ')
  writeFileSync(join(dir, 'conf.d/tessera.conf'), rendered.stdout)
  // The shape of the official image's /etc/nginx/nginx.conf.
  writeFileSync(join(dir, 'nginx.conf'), `worker_processes auto;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 1024; }
http {
  default_type application/octet-stream;
  log_format main '$remote_addr - $remote_user [$time_local] "$request"';
  access_log ${join(dir, 'default-access.log')} main;
  sendfile on;
  keepalive_timeout 65;
  client_body_temp_path ${join(dir, 'tmp')};
  proxy_temp_path ${join(dir, 'tmp')};
  include conf.d/*.conf;
}
`)
  const check = spawnSync(nginxBinary(), ['-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { encoding: 'utf8' })
  t.equal(check.status, 0, `nginx -t: ${check.stderr}`)
})

t.test('render-nginx.mjs routes SimpleJWT\'s prefix only when TESSERA_SIMPLEJWT_COMPAT=on', async (t) => {
  const tls = makeCertificate(tempDir(t, 'sjwt-tls'))
  for (const [compat, prefix] of [['off', '/api/token'], ['on', '/api/token'], ['on', '/auth/jwt']] as const) {
    const dir = tempDir(t, 'sjwt')
    const env = { PATH: process.env.PATH ?? '', GATEWAY_HTTP_PORT: String(await freePort()), GATEWAY_HTTPS_PORT: String(await freePort()), GATEWAY_TLS_CERT: tls.cert, GATEWAY_TLS_KEY: tls.key, TESSERA_SIMPLEJWT_COMPAT: compat, TESSERA_SIMPLEJWT_PREFIX: prefix }
    const render = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/render-nginx.mjs'), dir], { encoding: 'utf8', env })
    t.equal(render.status, 0, render.stderr)
    const conf = readFileSync(join(dir, 'conf.d/tessera.conf'), 'utf8')
    if (compat === 'on') t.match(conf, `location ^~ ${prefix}/ {\n    default_type application/json;\n    if ($args) {\n      return 400 '{"detail":"parameters in the URL are refused here: send them in the request body"}\\n';\n    }\n    limit_req zone=tessera_token burst=20 nodelay;\n    error_page 400 494 501 505 =400 /.tessera-gateway/drf-bad-request;\n    error_page 413 @drf_too_large;\n    error_page 429 @too_many_drf;\n    error_page 502 @drf_bad_gateway;\n    error_page 504 @drf_gateway_timeout;\n    proxy_pass http://tessera_auth;`)
    if (compat === 'on') t.match(conf, `\n  "~^[A-Z]+ (https?://[^/ ]*)?${prefix}/" drf;\n`, 'and the prefix\'s line in the map of refusals\' formats')
    else t.notMatch(conf, /api\/token/)
    const check = spawnSync(nginxBinary(), ['-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { encoding: 'utf8' })
    t.equal(check.status, 0, `nginx -t: ${check.stderr}`)
  }
  const refused = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/render-nginx.mjs'), tempDir(t, 'sjwt')], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_SIMPLEJWT_PREFIX: 'api token' } })
  t.same([refused.status, refused.stderr], [1, 'render-nginx: TESSERA_SIMPLEJWT_PREFIX="api token" is not a path such as /api/token\n'], 'a prefix the server would refuse: one line, no stack')
})

t.test('through the gateway', async (t) => {
  const [httpPort, httpsPort] = [await freePort(), await freePort()]
  const issuer = `https://127.0.0.1:${httpsPort}`
  const tls = makeCertificate(tempDir(t, 'tls'))
  const env = {
    DATABASE_URL: await createTestDatabase(t),
    TESSERA_KEK: randomBytes(32).toString('base64url'),
    TESSERA_ISSUER: issuer,
    TESSERA_TRUST_PROXY: '127.0.0.1',
    // Short, so that once every instance is down the gateway's copy is stale and served anyway.
    TESSERA_JWKS_MAX_AGE: '1s',
    TESSERA_SIMPLEJWT_COMPAT: 'on'
  }
  const auth = [await startServer(t, env), await startServer(t, env)]
  t.match(auth[0]?.output(), /"level":40,.*"msg":"sign-up is open while SimpleJWT compatibility is on: anyone can claim a Django username that is not imported yet; set TESSERA_SIGNUP=closed/, 'open sign-up beside SimpleJWT\'s routes is warned of at start')
  // As make stack and compose run it: the gateway's address trusted for its X-Request-Id.
  const notesEnv = { DATABASE_URL: env.DATABASE_URL, NOTES_ISSUER: issuer, NOTES_JWKS_TTL: '1', NODE_EXTRA_CA_CERTS: tls.cert, NOTES_TRUST_PROXY: '127.0.0.1' }
  const notes = await startNotes(t, notesEnv)
  const gateway: Gateway = await startGateway(t, {
    httpPort,
    httpsPort,
    authAddrs: auth.map((a) => new URL(a.url).host),
    notesAddr: `127.0.0.1:${notes.port}`,
    tls,
    simplejwtCompat: true
  })
  t.equal(gateway.configTest.status, 0, 'nginx -t passes on the rendered configuration')
  t.match(gateway.configTest.output, /test is successful/)

  const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })
  const token = async (body: Record<string, string>, headers: Record<string, string> = {}): Promise<Reply> =>
    await gateway.request('POST', '/oauth/token', { body: new URLSearchParams(body).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } })
  // As make stack does: the public client the README walkthrough logs in with, for the notes resource.
  const registered = await runCli(['clients', 'create', 'notes-web', '--grants', 'password,refresh_token', '--scopes', 'notes:read notes:write', '--resources', 'urn:tessera:notes'], { DATABASE_URL: env.DATABASE_URL })
  t.equal(registered.code, 0, registered.stderr)
  const NOTES_LOGIN = { client_id: 'notes-web', resource: 'urn:tessera:notes' }
  const login = async (username: string, headers: Record<string, string> = {}): Promise<Reply> => await token({ grant_type: 'password', username, password: PASSWORD, ...NOTES_LOGIN }, headers)
  const signUp = async (username: string): Promise<void> => {
    const res = await gateway.request('POST', '/v1/users', { body: { username, password: PASSWORD } })
    if (res.status !== 201) throw new Error(`sign-up failed: ${res.status} ${res.body}`)
  }
  let alice: { access: string, refresh: string }

  t.test('sign up, log in, notes, refresh, the new access token works, the refresh token does not', async (t) => {
    await signUp('alice')
    const first = await login('alice')
    t.equal(first.status, 200)
    const pair = first.json() as { access_token: string, refresh_token: string }
    const created = await gateway.request('POST', '/notes', { headers: bearer(pair.access_token), body: { text: 'through the gateway' } })
    t.equal(created.status, 201)
    const listed = await gateway.request('GET', '/notes', { headers: bearer(pair.access_token) })
    t.equal(listed.status, 200)
    t.same((listed.json().notes as Array<{ text: string }>).map((n) => n.text), ['through the gateway'])

    const refreshed = await token({ grant_type: 'refresh_token', refresh_token: pair.refresh_token, ...NOTES_LOGIN })
    t.equal(refreshed.status, 200)
    const next = refreshed.json() as { access_token: string, refresh_token: string }
    t.not(next.access_token, pair.access_token)
    t.equal((await gateway.request('GET', '/notes', { headers: bearer(next.access_token) })).status, 200, 'the new access token works in notes')
    const refused = await gateway.request('GET', '/notes', { headers: bearer(next.refresh_token) })
    t.equal(refused.status, 401, 'notes refuses a refresh token')
    t.equal(refused.headers['www-authenticate'], 'Bearer error="invalid_token"')
    alice = { access: next.access_token, refresh: next.refresh_token }

    // Read once the last request's line is in: Nginx writes each after its answer has gone, and a token missing from a line not yet written proves nothing.
    await gateway.accessLogOf(1, loggedAs(refused))
    const lines = gateway.accessLog()
    t.ok(lines.length > 0 && lines.every((line) => typeof JSON.parse(line).request_id === 'string'), 'the access log is JSON lines with a request id')
    t.notOk(lines.some((line) => line.includes(pair.access_token.slice(-20)) || line.includes(pair.refresh_token.slice(-20))), 'no token in the access log')
  })

  t.test('integrators.md\'s jose and PyJWT code verify a notes token through the gateway, trusting its certificate as "Trying it" says', async (t) => {
    const doc = readFileSync(join(REPO_ROOT, 'docs/integrators.md'), 'utf8')
    // The variable each runtime trusts a certificate by, as the section names it: a wrong name would leave the JWKS unfetchable.
    const trusted = Object.fromEntries([...doc.slice(doc.indexOf('## Trying it')).matchAll(/`([A-Z_]+)=\.data\/tls\/cert\.pem (node|python3) …`/g)].map((m) => [m[2], m[1]]))
    t.same(Object.keys(trusted).sort(), ['node', 'python3'], 'the section says how to trust the certificate in both')
    const block = (heading: string, lang: string): string => new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(doc.slice(doc.indexOf(heading)))?.[1] ?? ''
    // Substituted as the section says: the gateway for https://auth.example.com, notes' audience for api.
    const jose = block('## Node: jose', 'js').replaceAll('https://auth.example.com', issuer).replace("audience: 'api'", "audience: 'urn:tessera:notes'") +
      'try { console.log(200, (await verifyAccessToken(process.argv[1])).sub) } catch (err) { console.log(err instanceof KeysUnavailable ? 503 : 401) }\n'
    const pyjwt = 'import sys\n' + block('## Python: PyJWT', 'python').replace('"https://auth.example.com"', `"${issuer}"`).replace('audience="api"', 'audience="urn:tessera:notes"') +
      'try:\n    print(200, verify_access_token(sys.argv[1])["sub"])\nexcept KeysUnavailable:\n    print(503)\n'
    const sub = JSON.parse(Buffer.from(alice.access.split('.')[1] ?? '', 'base64url').toString()).sub as string
    const run = promisify(execFile)
    const verdict = async (runtime: 'node' | 'python3', trust: boolean): Promise<string> => {
      const env = { ...process.env }
      const name = trusted[runtime] ?? ''
      if (trust) env[name] = tls.cert
      else delete env[name]
      // From the repository root, where jose is installed.
      const [file, args] = runtime === 'node' ? [process.execPath, ['--input-type=module', '-e', jose]] : [PYTHON, ['-c', pyjwt]]
      return (await run(file, [...args, alice.access], { cwd: REPO_ROOT, env })).stdout.trim()
    }
    for (const runtime of ['node', 'python3'] as const) {
      t.equal(await verdict(runtime, true), `200 ${sub}`, `${runtime}: verified, with ${trusted[runtime] ?? '?'}`)
      t.equal(await verdict(runtime, false), '503', `${runtime}: without it, the JWKS cannot be fetched`)
    }
  })

  t.test('the JWKS through the gateway: Tessera\'s caching, a strong ETag, 304 on If-None-Match', async (t) => {
    const first = await gateway.request('GET', '/.well-known/jwks.json')
    t.equal(first.status, 200)
    t.equal(first.headers['cache-control'], 'public, max-age=1, s-maxage=1', 'TESSERA_JWKS_MAX_AGE, as Tessera says it')
    const etag = String(first.headers.etag)
    t.match(etag, /^"[A-Za-z0-9_-]{20,}"$/, 'a strong ETag, passed on')
    // Served from the gateway's copy, or the copy revalidated: a verifier revalidating either way gets a 304.
    for (const condition of [etag, `"other", ${etag}`]) {
      const again = await gateway.request('GET', '/.well-known/jwks.json', { headers: { 'if-none-match': condition } })
      t.same([again.status, again.body, again.headers.etag, again.headers['cache-control']], [304, '', etag, first.headers['cache-control']], `If-None-Match: ${condition}`)
      await sleep(1100)
    }
    const changed = await gateway.request('GET', '/.well-known/jwks.json', { headers: { 'if-none-match': '"other"' } })
    t.same([changed.status, changed.body], [200, first.body], 'another ETag: the set itself')
  })

  t.test('SimpleJWT\'s routes through the gateway: log in, call notes, refresh, blacklist', async (t) => {
    await signUp('simple')
    const pair = (await gateway.request('POST', '/api/token/', { body: { username: 'simple', password: PASSWORD } })).json() as { access: string, refresh: string }
    t.equal((await gateway.request('GET', '/v1/me', { headers: bearer(pair.access) })).status, 200, 'the compat access token works')
    const inUrl = await gateway.request('POST', `/api/token/?username=simple&password=${encodeURIComponent(PASSWORD)}`, { body: { username: 'simple', password: PASSWORD } })
    t.same([inUrl.status, inUrl.json()], [400, { detail: 'a credential in the URL is refused: send a token in the Authorization header, anything else in the request body' }], 'a password in the URL: refused in DRF\'s shape, before anything logs it')
    const data = new FormData()
    data.append('username', 'simple')
    data.append('password', PASSWORD)
    const encoded = new Request('https://gateway.test/', { method: 'POST', body: data })
    const multipart = await gateway.request('POST', '/api/token/', { body: await encoded.text(), headers: { 'content-type': encoded.headers.get('content-type') ?? '' } })
    t.same([multipart.status, Object.keys(multipart.json() as object).sort()], [200, ['access', 'refresh']], 'a browser\'s FormData login, multipart through the gateway')
    const form = await gateway.request('POST', '/api/token/refresh/', { body: new URLSearchParams({ refresh: pair.refresh }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } })
    t.equal(form.status, 200)
    const rotated = form.json() as { access: string, refresh: string }
    t.equal((await gateway.request('POST', '/api/token/blacklist/', { body: { refresh: rotated.refresh } })).status, 200)
    const after = await gateway.request('POST', '/api/token/refresh/', { body: { refresh: rotated.refresh } })
    t.same([after.status, after.json()], [401, { detail: 'Token is blacklisted', code: 'token_not_valid' }], 'as SimpleJWT answers a blacklisted token')
  })

  const basic = (id: string, secret: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}` })
  const createService = async (id: string, scopes: string): Promise<string> => {
    const created = await runCli(['clients', 'create', id, '--confidential', '--scopes', scopes, '--resources', 'urn:tessera:notes', '--json'], { DATABASE_URL: env.DATABASE_URL })
    if (created.code !== 0) throw new Error(created.stderr)
    return (JSON.parse(created.stdout) as { client_secret: string }).client_secret
  }

  t.test('a service gets a notes token with client_credentials; notes enforces audience and scopes', async (t) => {
    const writerSecret = await createService('indexer', 'notes:read notes:write')
    const readerSecret = await createService('auditor', 'notes:read')
    const serviceToken = async (id: string, secret: string): Promise<string> => {
      const res = await token({ grant_type: 'client_credentials', resource: 'urn:tessera:notes' }, basic(id, secret))
      // The body is a diagnostic, which tap prints only for a failure: a passing one is a token.
      t.equal(res.status, 200, `${id} gets a token`, { body: res.body })
      t.notOk('refresh_token' in res.json(), 'an access token only')
      return res.json().access_token as string
    }
    const writer = await serviceToken('indexer', writerSecret)
    const posted = await gateway.request('POST', '/notes', { headers: bearer(writer), body: { text: 'from the indexer' } })
    t.equal(posted.status, 201, 'a service token with notes:write posts')
    const listed = await gateway.request('GET', '/notes', { headers: bearer(writer) })
    t.same((listed.json().notes as Array<{ text: string }>).map((n) => n.text), ['from the indexer'], 'its notes are its own (sub = client_id)')

    const reader = await serviceToken('auditor', readerSecret)
    t.equal((await gateway.request('GET', '/notes', { headers: bearer(reader) })).status, 200)
    const denied = await gateway.request('POST', '/notes', { headers: bearer(reader), body: { text: 'no' } })
    t.equal(denied.status, 403, 'without notes:write it cannot POST')
    t.equal(denied.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="notes:write"')

    await signUp('nadia')
    const apiToken = await token({ grant_type: 'password', username: 'nadia', password: PASSWORD })
    t.equal(apiToken.status, 200, 'the default client still logs in without client_id')
    const other = await gateway.request('GET', '/notes', { headers: bearer(apiToken.json().access_token as string) })
    t.equal(other.status, 401, 'a token for another audience (api) is refused by notes')
    t.equal(other.headers['www-authenticate'], 'Bearer error="invalid_token"')
  })

  t.test('zero-downtime secret rotation: requests keep succeeding while the service switches secrets', async (t) => {
    const oldSecret = await createService('rotating', 'notes:read')
    let secret = oldSecret
    const statuses: number[] = []
    let rotated: { client_secret: string, previous_secret_expires_at: string } | undefined
    for (let i = 0; i < 12; i++) {
      if (i === 4) {
        const out = await runCli(['clients', 'rotate-secret', 'rotating', '--grace', '4s', '--json'], { DATABASE_URL: env.DATABASE_URL })
        t.equal(out.code, 0, out.stderr)
        rotated = JSON.parse(out.stdout)
      }
      // The service rolls to the new secret a few requests after the rotation.
      if (i === 8 && rotated !== undefined) secret = rotated.client_secret
      const res = await token({ grant_type: 'client_credentials', resource: 'urn:tessera:notes' }, basic('rotating', secret))
      statuses.push(res.status)
      const got = res.status === 200 ? await gateway.request('GET', '/notes', { headers: bearer(res.json().access_token as string) }) : undefined
      statuses.push(got?.status ?? 0)
      await sleep(150)
    }
    t.same(statuses, Array(24).fill(200), 'every token request and every notes call succeeded, before, during and after the rotation')
    t.not(rotated?.client_secret, oldSecret)
    await sleep(Math.max(0, Date.parse(rotated?.previous_secret_expires_at ?? '') - Date.now() + 200))
    const late = await token({ grant_type: 'client_credentials' }, basic('rotating', oldSecret))
    t.equal(late.status, 401, 'after the grace period the old secret fails')
    t.match(late.json(), { error: 'invalid_client' })
    t.match(late.headers['www-authenticate'], /^Basic /)
    t.equal((await token({ grant_type: 'client_credentials' }, basic('rotating', secret))).status, 200, 'the new one works')
  })

  t.test('a client-sent X-Forwarded-For does not change the IP Tessera records', async (t) => {
    const spoofed = { 'x-forwarded-for': '203.0.113.7', 'x-real-ip': '203.0.113.8' }
    // A token for Tessera's own API (the default client, aud api), which /v1/sessions accepts.
    const res = await token({ grant_type: 'password', username: 'alice', password: PASSWORD }, spoofed)
    t.equal(res.status, 200)
    const access = res.json().access_token as string
    const sessions = await gateway.request('GET', '/v1/sessions', { headers: { ...bearer(access), ...spoofed } })
    const current = (sessions.json().sessions as Array<{ ip: string, current: boolean }>).find((s) => s.current)
    t.equal(current?.ip, '127.0.0.1', 'the address Nginx saw, not the one the client claimed')
    // Each request's log line, written as it finishes (which may be after its answer is read), carries the address Tessera took for it.
    // Whole lines only: the last may be half written.
    const requestLine = (reply: Reply): { ip?: string } | undefined => auth.flatMap((a) => a.output().split('\n').slice(0, -1))
      .filter((line) => line.includes(`"reqId":"${String(reply.headers['x-request-id'])}"`)).map((line) => JSON.parse(line) as { msg?: string, ip?: string })
      .find((line) => line.msg === 'request')
    t.ok(await within(15_000, async () => requestLine(res) !== undefined && requestLine(sessions) !== undefined, 50) !== undefined, 'both requests are logged')
    t.same([requestLine(res)?.ip, requestLine(sessions)?.ip], ['127.0.0.1', '127.0.0.1'], 'with the address Nginx saw')
    t.notOk(auth.some((a) => a.output().includes('203.0.113.')), 'nor does Tessera log the claimed address')
    // The control: Tessera does believe X-Forwarded-For from its trusted proxy
    // address, so the gateway's replacing it is what protects the value above.
    const direct = await fetch(`${auth[0]?.url ?? ''}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.7' },
      body: JSON.stringify({ grant_type: 'password', username: 'alice', password: PASSWORD })
    })
    t.equal(direct.status, 200)
    const all = await gateway.request('GET', '/v1/sessions', { headers: bearer(access) })
    t.ok((all.json().sessions as Array<{ ip: string }>).some((s) => s.ip === '203.0.113.7'), 'a direct, unreplaced header would have been believed')
  })

  t.test('security headers, request ids, /metrics, redirect, body limit', async (t) => {
    const res = await gateway.request('GET', '/.well-known/openid-configuration', { headers: { 'x-request-id': 'gateway-test-42' } })
    t.equal(res.status, 200)
    t.equal(res.json().issuer, issuer)
    const documentation = await gateway.request('GET', new URL(String(res.json().service_documentation)).pathname)
    t.equal(documentation.status, 200, 'service_documentation answers through the gateway')
    t.equal(documentation.json().openapi, '3.1.0')
    t.match(res.headers['strict-transport-security'], /max-age=\d+/)
    t.equal(res.headers['x-content-type-options'], 'nosniff')
    t.equal(res.headers['referrer-policy'], 'no-referrer')
    t.equal(res.headers.server, 'nginx', 'no version')
    const minted = String(res.headers['x-request-id'])
    t.match(minted, /^[0-9a-f]{32}$/, 'the request id is the gateway\'s own, not the client\'s: a client cannot pick the id it is logged and audited under')
    // Nginx writes a log line as the request finishes, which may be just after the reply is read; only a line never written should run out the wait.
    const loggedWith = async (requestId: unknown, clientRequestId: string): Promise<boolean> => await within(15_000, async () =>
      gateway.accessLog().some((line) => JSON.parse(line).request_id === requestId && JSON.parse(line).client_request_id === clientRequestId)) !== undefined
    t.ok(await loggedWith(minted, 'gateway-test-42'), 'the client\'s is logged beside it')
    const oversized = await gateway.request('GET', '/.well-known/openid-configuration', { headers: { 'x-request-id': 'x'.repeat(4000) } })
    t.ok(await loggedWith(oversized.headers['x-request-id'], '-'), 'one it would not have taken is not logged either')

    const bogus = await token({ grant_type: 'bogus' }, { 'x-request-id': 'gateway-test-43' })
    t.equal(bogus.status, 400)
    const sent = String(bogus.headers['x-request-id'])
    const seen = async (): Promise<boolean> => auth.some((a) => a.output().includes(`"reqId":"${sent}"`))
    // Its log line may arrive after the reply; only one never written should run out the wait.
    t.ok(await within(15_000, seen, 100) !== undefined, 'Tessera logs the gateway\'s request id')
    t.notOk(auth.some((a) => a.output().includes('gateway-test-43')), 'and never the client\'s')

    const wrongMethod = await gateway.request('GET', '/oauth/token')
    t.equal(wrongMethod.status, 405, 'a method the path is not served with: Tessera\'s 405, through the gateway')
    t.equal(wrongMethod.headers.allow, 'POST', 'with its Allow')
    t.equal(wrongMethod.json().error, 'invalid_request')
    const hugeHeader = await gateway.request('GET', '/v1/me', { headers: { authorization: `Bearer ${'a'.repeat(10_000)}` } })
    t.equal(hugeHeader.status, 400, 'a header line past Nginx\'s 8 KB buffers')
    t.match(hugeHeader.json(), { type: 'about:blank', title: 'Bad Request', status: 400 }, 'in problem+json, not an HTML page')
    // Headers of 16-32 KB, each line under 8 KB: Nginx passes them, Node's parser refuses them (431), in the route's format.
    const bulky = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`x-bulky-${i}`, 'a'.repeat(5000)]))
    const overNode = async (path: string): Promise<Reply> => await gateway.request('POST', path, { body: 'a=b', headers: { 'content-type': 'application/x-www-form-urlencoded', ...bulky } })
    const oauth431 = await overNode('/oauth/token')
    t.same([oauth431.status, oauth431.json()], [431, { error: 'invalid_request', error_description: 'the request\'s headers are larger than the server accepts' }], 'headers over Node\'s limit on /oauth/token: RFC 6749\'s invalid_request')
    t.equal(oauth431.headers['cache-control'], 'no-store')
    const drf431 = await overNode('/api/token/')
    t.same([drf431.status, drf431.json()], [431, { detail: 'the request\'s headers are larger than the server accepts' }], 'on SimpleJWT\'s login: DRF\'s {"detail"}')
    const problem431 = await overNode('/v1/users')
    t.same([problem431.status, problem431.headers['content-type']], [431, 'application/problem+json'], 'on /v1/users: problem+json')
    t.match(problem431.headers['x-request-id'], /^[0-9a-f]{32}$/)
    t.equal(problem431.json().request_id, problem431.headers['x-request-id'], 'naming the gateway\'s request id')
    // Request lines Nginx cannot read: its error page once was a named location, which it refuses for them (500, HTML).
    for (const line of ['GARBAGE', 'GET /../x HTTP/1.1']) {
      const raw = await rawRequest(gateway, `${line}\r\nHost: x\r\nConnection: close\r\n\r\n`)
      t.match(raw, /^HTTP\/1\.1 400 Bad Request\r\n/, `${line}: 400`)
      t.match(raw, /\r\ncontent-type: application\/problem\+json\r\n/i, `${line}: in problem+json`)
      t.match(raw, /\r\n\r\n\{"type":"about:blank","title":"Bad Request","status":400,/, `${line}: the problem's body`)
    }
    const nul = await rawRequest(gateway, 'POST /oauth/token%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    t.match(nul, /^HTTP\/1\.1 400 Bad Request\r\n/, 'a URI Nginx cannot read on /oauth/: 400')
    t.match(nul, /\r\n\r\n\{"error":"invalid_request","error_description":/, 'in RFC 6749\'s format, as the path\'s route answers')
    t.equal((await gateway.request('GET', '/.tessera-gateway/bad-request')).status, 404, 'the error page is not a path a client can ask for')
    // A path with a file extension too: Nginx would type its 404 by the extension (text/html, image/gif).
    for (const path of ['/metrics', '/healthz', '/app/index.html', '/logo.gif']) {
      const unrouted = await gateway.request('GET', path)
      t.equal(unrouted.status, 404, `${path} is not routed`)
      t.match(unrouted.headers['content-type'], /^application\/problem\+json/, 'answered by the gateway in the API\'s format, not an HTML page')
      t.same(unrouted.json(), { type: 'about:blank', title: 'Not Found', status: 404, detail: 'no such path at this gateway', instance: path, request_id: unrouted.headers['x-request-id'] })
    }
    const redirect = await gateway.plainRequest('GET', '/v1/me')
    t.equal(redirect.status, 301)
    t.equal(redirect.headers.location, `${issuer}/v1/me`)
    const credentials: Array<[string, string, RequestOptions]> = [
      ['POST', '/oauth/token', { body: 'grant_type=password&username=alice&password=sent-in-clear', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
      ['POST', '/oauth/revoke', { body: { token: 'sent-in-clear' } }],
      ['POST', '/v1/users', { body: { username: 'alice', password: 'sent-in-clear' } }],
      ['PUT', '/v1/password', { body: { current_password: 'a', new_password: 'b' } }],
      ['GET', '/v1/me', { headers: { authorization: 'Bearer sent.in.clear' } }]
    ]
    for (const [method, path, requestOptions] of credentials) {
      const refused = await gateway.plainRequest(method, path, requestOptions)
      t.equal(refused.status, 403, `plain-HTTP ${method} ${path} is refused`)
      t.equal(refused.headers.location, undefined, 'not redirected')
      t.match(refused.json(), path.startsWith('/oauth/') ? { error: 'invalid_request' } : { status: 403, title: 'Forbidden', request_id: /^[0-9a-f]{32}$/ })
    }
    const typedByExtension = await gateway.plainRequest('POST', '/app/index.html')
    t.equal(typedByExtension.status, 403)
    t.match(typedByExtension.headers['content-type'], /^application\/problem\+json/, 'plain HTTP\'s refusal is problem+json whatever the path\'s extension')

    const big = await gateway.request('POST', '/oauth/token', { body: { grant_type: 'password', username: 'alice', password: 'x'.repeat(64 * 1024) } })
    t.equal(big.status, 413)
    t.same(big.json(), { error: 'invalid_request', error_description: 'the body is larger than 16384 bytes' }, 'answered by Nginx, not Tessera, in RFC 6749\'s format as /oauth/ answers')
    t.equal(big.headers['cache-control'], 'no-store')
    t.match(big.headers['x-request-id'], /^[0-9a-f]{32}$/)
    t.equal(big.headers['x-content-type-options'], 'nosniff')
    const bigSignUp = await gateway.request('POST', '/v1/users', { body: { username: 'alice', password: 'x'.repeat(64 * 1024) } })
    t.equal(bigSignUp.status, 413)
    t.match(bigSignUp.json(), { title: 'Content Too Large', detail: /16384/, instance: '/v1/users' }, 'problem+json outside /oauth/')
    t.equal(bigSignUp.json().request_id, bigSignUp.headers['x-request-id'], 'naming its request, as every problem does')
    const trace = await gateway.request('TRACE', '/v1/me')
    t.equal(trace.status, 405)
    t.equal(trace.headers.allow, 'GET, HEAD', 'naming what the path is served with (RFC 9110 §15.5.6)')
    t.equal(trace.headers['x-content-type-options'], 'nosniff', 'with the security headers')
    t.same(trace.json(), { type: 'about:blank', title: 'Method Not Allowed', status: 405, detail: 'this method is not served here', instance: '/v1/me', request_id: trace.headers['x-request-id'] }, 'a method Nginx refuses itself: problem+json, not its HTML page')
    // Refused before a location is chosen, so the path picks the format, as Tessera's own 405s answer there.
    for (const path of ['/oauth/token', '/oauth/revoke']) {
      const oauthTrace = await gateway.request('TRACE', path)
      t.same([oauthTrace.status, oauthTrace.headers['content-type'], oauthTrace.json()], [405, 'application/json', { error: 'invalid_request', error_description: 'this method is not served here' }], `TRACE ${path}: RFC 6749's invalid_request`)
      t.equal(oauthTrace.headers['cache-control'], 'no-store')
      t.equal(oauthTrace.headers.allow, 'POST')
      t.equal(oauthTrace.headers['x-content-type-options'], 'nosniff', 'with the security headers')
      t.match(oauthTrace.headers['x-request-id'], /^[0-9a-f]{32}$/)
    }
    const drfTrace = await gateway.request('TRACE', '/api/token/refresh/')
    t.same([drfTrace.status, drfTrace.headers['content-type'], drfTrace.json()], [405, 'application/json', { detail: 'Method "TRACE" not allowed.' }], 'TRACE on SimpleJWT\'s prefix: DRF\'s own 405')
    t.same([drfTrace.headers.allow, drfTrace.headers['x-content-type-options']], ['POST', 'nosniff'])
    for (const bare of ['/v1', '/oauth', '/.well-known']) {
      const unslashed = await gateway.request('GET', bare)
      t.equal(unslashed.status, 404, `${bare} without its slash`)
      t.match(unslashed.headers['content-type'], /^application\/problem\+json/, `${bare}: Tessera's JSON 404, not Nginx's HTML redirect`)
    }
    // Nginx writes the log line as the request finishes, which may be just after we read the reply.
    const logged413 = (): Array<{ status: number, upstream: string }> => gateway.accessLog().map((line) => JSON.parse(line) as { status: number, upstream: string }).filter((l) => l.status === 413)
    t.ok(await within(15_000, async () => logged413().length >= 2) !== undefined, 'the two 413s are logged')
    t.same(logged413().map((l) => [l.status, l.upstream]), [[413, ''], [413, '']], 'once each, and neither reached an upstream')
    t.notOk(gateway.accessLog().some((line) => line.includes('xxxxxxxx')), 'no body in the log')
    // A parameter of no credential's name is passed on (one that is, is refused: the test of error.log below).
    const query = await gateway.request('GET', `/.well-known/jwks.json?v=${alice.access}`)
    t.equal(query.status, 200)
    await gateway.accessLogOf(1, loggedAs(query))
    t.notOk(gateway.accessLog().some((line) => line.includes(alice.access.slice(-20))), 'no query string in the log')

    // A password in the URL: refused before the rate limit, whose refusals log the request line in error.log.
    const inUrl = '/oauth/token?grant_type=password&username=alice&password=in-the-url-secret'
    const refusedInUrl = await Promise.all(Array.from({ length: 40 }, async () => await gateway.request('POST', inUrl, { body: 'grant_type=password', headers: { 'content-type': 'application/x-www-form-urlencoded' } })))
    t.same([...new Set(refusedInUrl.map((r) => r.status))], [400], 'every one refused as malformed, none counted against the limit (no 429)')
    t.same(refusedInUrl[0]?.json(), { error: 'invalid_request', error_description: 'a credential in the URL is refused: send a token in the Authorization header, anything else in the request body' })
    const signUpInUrl = await gateway.request('POST', '/v1/users?password=in-the-url-secret', { body: { username: 'urlsignup', password: 'a long enough password' } })
    t.equal(signUpInUrl.status, 400)
    t.match(signUpInUrl.headers['content-type'], /^application\/problem\+json/)
    t.equal(signUpInUrl.json().request_id, signUpInUrl.headers['x-request-id'])
    t.notOk(gateway.errorLog().includes('in-the-url-secret'), 'nothing of it in error.log')
    await gateway.accessLogOf(1, loggedAs(signUpInUrl))
    t.notOk(gateway.accessLog().some((line) => line.includes('in-the-url-secret')), 'nor in the access log')
  })

  t.test('notes behind the gateway: one request id in the answer\'s header, its body, notes\' log line and the access log; each security header once; a direct client\'s id not taken', async (t) => {
    /** notes' `request` log line for the request known as `id`; whole lines only, the last may be half written. */
    const notesLine = (id: string): Record<string, unknown> | undefined => notes.output().split('\n').slice(0, -1)
      .filter((line) => line.includes(`"reqId":"${id}"`)).map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === 'request')
    const refused = await gateway.request('GET', '/notes', { headers: { 'x-request-id': 'client-picked-7' } })
    t.equal(refused.status, 401)
    const id = String(refused.headers['x-request-id'])
    t.match(id, /^[0-9a-f]{32}$/, 'X-Request-Id: the gateway\'s $request_id, once')
    t.equal(refused.json().request_id, id, 'the problem body names the same id')
    t.ok(await within(15_000, async () => notesLine(id) !== undefined, 50) !== undefined, 'notes logs the request under it')
    t.match(notesLine(id), { method: 'GET', path: '/notes', status: 401 })
    const [accessLine] = await gateway.accessLogOf(1, loggedAs(refused))
    t.match(JSON.parse(accessLine ?? '{}'), { request_id: id, client_request_id: 'client-picked-7', path: '/notes', status: 401 }, 'and the gateway\'s access log, the client\'s own beside it')
    t.notOk(notes.output().includes('client-picked-7'), 'the client\'s id reaches notes nowhere')

    const listed = await gateway.request('GET', '/notes', { headers: bearer(alice.access) })
    t.equal(listed.status, 200)
    for (const [what, reply] of [['a 401', refused], ['a 200', listed]] as const) {
      // Node joins a repeated header with ", ": each value whole is each header once.
      t.same([reply.headers['x-content-type-options'], reply.headers['referrer-policy'], reply.headers['x-frame-options']], ['nosniff', 'no-referrer', 'SAMEORIGIN'], `${what}: nosniff, Referrer-Policy and frame options, each once`)
      t.match(reply.headers['strict-transport-security'], /^max-age=\d+; includeSubDomains$/, `${what}: the gateway's HSTS, once`)
    }

    // Directly, from an address other than the gateway's (127.0.0.2 is this host too): notes makes its own id.
    const fromElsewhere = async (localAddress: string, requestId: string): Promise<{ status: number, header: string, body: Record<string, unknown> }> => await new Promise((resolve, reject) => {
      httpGet(`${notes.url}/notes`, { localAddress, headers: { 'x-request-id': requestId } }, (res) => {
        let body = ''
        res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => {
          resolve({ status: res.statusCode ?? 0, header: String(res.headers['x-request-id']), body: JSON.parse(body) as Record<string, unknown> })
        })
      }).on('error', reject)
    })
    const direct = await fromElsewhere('127.0.0.2', 'forged-direct-9')
    t.equal(direct.status, 401)
    t.match(direct.header, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a client\'s X-Request-Id, sent to notes directly, is not taken: notes\' own UUID')
    t.equal(direct.body.request_id, direct.header, 'the same in the body')
    t.ok(await within(15_000, async () => notesLine(direct.header) !== undefined, 50) !== undefined, 'and in notes\' log line')
    t.notOk(notes.output().includes('forged-direct-9'), 'the forged one is logged nowhere')
    // The control: from the gateway's address the same header is taken, so the peer is what refused it above.
    t.equal((await fromElsewhere('127.0.0.1', 'from-the-gateway-9')).header, 'from-the-gateway-9', 'from NOTES_TRUST_PROXY\'s address it is taken')
  })

  t.test('every 405 through the gateway carries the Allow the instance gives: its own passed on, and the gateway\'s to TRACE for every path', async (t) => {
    const authUrl = auth[0]?.url ?? ''
    // notes' routes from its router, Tessera's from /openapi.json: a route either adds is compared below.
    const notesPaths = [...new Set((await notesRoutes(notesEnv)).map((route) => route.url.replace(/:[^/]+/g, 'some-id')))]
    t.ok(notesPaths.includes('/notes') && notesPaths.includes('/notes/some-id'), `notes' routes were read (${notesPaths.join(', ')})`)
    const servedByNotes = (path: string): boolean => notesPaths.some((own) => path.split('?')[0] === own || path.startsWith(`${own}/`))
    const direct = async (method: string, path: string): Promise<Reply> => await request(`${servedByNotes(path) ? notes.url : authUrl}${path}`, { method })
    const mediaType = (reply: Reply): string => String(reply.headers['content-type']).split(';')[0] ?? ''
    // An instance's own 405s pass through the gateway untouched.
    for (const [method, path] of [['DELETE', '/v1/me'], ['GET', '/oauth/token'], ['POST', '/.well-known/jwks.json'], ['PUT', '/notes'], ['GET', '/api/token/refresh/']] as const) {
      const [own, via] = [await direct(method, path), await gateway.request(method, path)]
      t.equal(via.status, 405, `${method} ${path}: 405`)
      t.ok(via.headers.allow, `${method} ${path}: with an Allow`)
      t.equal(via.headers.allow, own.headers.allow, `${method} ${path}: the instance's`)
    }
    // Every route Tessera describes and notes serves, SimpleJWT's, and paths beside them that no route serves.
    const described = Object.keys((await direct('GET', '/openapi.json')).json<{ paths: Record<string, unknown> }>().paths)
    const unrouted = new Set(['/healthz', '/readyz', '/metrics'])
    const paths = [...new Set([
      ...described.map((path) => path.replace(/\{[^}]+\}/g, 'some-id')),
      ...notesPaths,
      '/notes/00000000-0000-4000-8000-000000000000', '/api/token/', '/api/token/refresh/', '/api/token/verify/', '/api/token/blacklist/',
      '/v1/me?x=1', '/oauth/token?', '/v1/sessions/', '/v1/sessions/a/b', '/v1/sessions/a%2Fb', '/v1/nowhere', '/v1/me/', '/oauth/nowhere', '/oauth/token/',
      '/notes/', '/notes/a/b', '/api/token', '/api/token/nowhere/', '/api/token/refresh', '/.well-known/nowhere', '/openapi.json/x', '/nowhere', '/metrics'
    ])]
    t.ok(described.includes('/v1/sessions/{id}') && described.includes('/oauth/token') && described.includes('/api/token/refresh/'), `Tessera's routes were read (${described.length})`)
    for (const path of paths) {
      const via = await gateway.request('TRACE', path)
      if (unrouted.has(path)) {
        t.same([via.status, via.headers.allow], [404, undefined], `TRACE ${path}: not routed by the gateway, its 404`)
        continue
      }
      const own = await direct('TRACE', path)
      t.same([via.status, via.headers.allow, mediaType(via)], [own.status, own.headers.allow, mediaType(own)], `TRACE ${path}: ${own.status}${own.headers.allow === undefined ? '' : ` Allow: ${String(own.headers.allow)}`}, as the instance answers`)
    }
    // The request line in absolute form names the same path.
    const absolute = await rawRequest(gateway, `TRACE ${gateway.origin}/v1/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
    t.match(absolute, /^HTTP\/1\.1 405 /)
    t.match(absolute, /\r\nallow: GET, HEAD\r\n/i, 'absolute form: the same Allow')
  })

  t.test('two Host lines are the gateway\'s 400, a Host it passes on that is not a host the instance\'s: in the path\'s format either way (RFC 9112 §3.2)', async (t) => {
    const answerOf = (raw: string): { status: number, body: unknown } => ({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(raw)?.[1]), body: JSON.parse(raw.split('\r\n\r\n')[1] ?? 'null') })
    const twice = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: elsewhere.test\r\nConnection: close\r\n\r\n`
    t.match(answerOf(await rawRequest(gateway, twice('/v1/me'))), { status: 400, body: { title: 'Bad Request', status: 400 } }, '/v1/me: a problem')
    t.match(answerOf(await rawRequest(gateway, twice('/oauth/token'))), { status: 400, body: { error: 'invalid_request' } }, '/oauth/token: RFC 6749\'s invalid_request')
    const odd = answerOf(await rawRequest(gateway, 'GET /v1/me HTTP/1.1\r\nHost: user@127.0.0.1\r\nConnection: close\r\n\r\n', { halfClose: false }))
    t.match(odd, { status: 400, body: { status: 400, detail: 'the Host header is not a host name or address with an optional port' } }, 'a Host with user info: passed on by Nginx, refused by Tessera')
  })

  t.test('kill -9 one of two auth instances: logins and refreshes keep succeeding', async (t) => {
    await signUp('bob')
    const before = gateway.accessLog().length
    const victim = auth[0]
    if (victim === undefined) throw new Error('no instance')
    await killInstance(victim)
    const statuses: number[] = []
    let last: Reply | undefined
    for (let i = 0; i < 6; i++) {
      const res = await login('bob')
      statuses.push(res.status)
      last = res
      if (res.status !== 200) continue
      const refreshed = await token({ grant_type: 'refresh_token', refresh_token: res.json().refresh_token as string, ...NOTES_LOGIN })
      statuses.push(refreshed.status)
      last = refreshed
    }
    // Nginx's one worker writes each line after its answer, before it takes the next request: once the last one's is in, all are.
    if (last !== undefined) await gateway.accessLogOf(1, loggedAs(last))
    t.same(statuses, Array(12).fill(200), 'every login and refresh succeeded', { accessLog: gateway.accessLog().slice(before), errorLog: readFileSync(join(gateway.prefix, 'error.log'), 'utf8').split('\n').slice(-10) })
    const upstreams = gateway.accessLog().slice(before).map((line) => JSON.parse(line).upstream as string)
    t.ok(upstreams.some((u) => u.includes(',')), 'Nginx tried the dead instance and moved on to the live one')
  })

  t.test('limit_req: a burst of token requests gets 429 from Nginx', async (t) => {
    await sleep(2500) // let the earlier requests drain from the bucket
    const replies = await Promise.all(Array.from({ length: 40 }, async () => await token({ grant_type: 'bogus' })))
    const limited = replies.filter((r) => r.status === 429)
    t.ok(limited.length >= 10, `${limited.length} of 40 refused`)
    t.ok(replies.some((r) => r.status === 400), 'the burst allowance reached Tessera')
    t.match(limited[0]?.json(), { error: 'temporarily_unavailable' })
    t.equal(limited[0]?.headers['retry-after'], '1')
    t.equal(limited[0]?.headers['cache-control'], 'no-store', 'no-store, as Tessera\'s own RFC 6749 answers')
    const refusalLines = gateway.errorLog().split('\n').filter((line) => line.includes('limiting requests'))
    t.ok(refusalLines.length >= 10, 'error.log says which zone refused')
    t.same(refusalLines.filter((line) => !line.includes(' [warn] ')), [], 'as a warning: a client over its limit is no error of the gateway\'s')
    const signups = await Promise.all(Array.from({ length: 25 }, async () => await gateway.request('POST', '/v1/users', { body: { username: 'x' } })))
    const refusedSignup = signups.find((r) => r.status === 429)
    t.ok(signups.filter((r) => r.status === 429).length >= 5, 'sign-ups are limited too')
    t.same(refusedSignup?.json(), { type: 'about:blank', title: 'Too Many Requests', status: 429, detail: 'too many requests; retry later', instance: '/v1/users', request_id: refusedSignup?.headers['x-request-id'] }, 'in problem+json, as /v1 answers')
    t.match(refusedSignup?.headers['content-type'], /^application\/problem\+json/)
    t.equal(refusedSignup?.headers['retry-after'], '1')
    t.ok(signups.some((r) => r.status === 400), 'within the burst, Tessera answers')
    await sleep(2500)
    const changes = await Promise.all(Array.from({ length: 40 }, async () => await gateway.request('PUT', '/v1/password', { body: { current_password: 'x', new_password: 'y' } })))
    t.ok(changes.filter((r) => r.status === 429).length >= 10, 'password changes, which check a password as a login does, are limited with the token requests')
    t.ok(changes.some((r) => r.status === 401), 'within the burst, Tessera answers (no Bearer token: 401)')
    await sleep(2500)
    const revocations = await Promise.all(Array.from({ length: 40 }, async () => await gateway.request('POST', '/oauth/revoke', { body: 'token=not-a-token&client_id=notes-web', headers: { 'content-type': 'application/x-www-form-urlencoded' } })))
    const refusedRevocation = revocations.find((r) => r.status === 429)
    t.ok(revocations.filter((r) => r.status === 429).length >= 10, 'revocations, which verify a signature and write as a refresh does, are limited with the token requests')
    t.same(refusedRevocation?.json(), { error: 'temporarily_unavailable', error_description: 'too many requests; retry later' }, 'in RFC 6749\'s format, as /oauth/ answers')
    t.equal(refusedRevocation?.headers['retry-after'], '1')
    t.ok(revocations.some((r) => r.status === 200), 'within the burst, Tessera answers (an unknown token: 200, RFC 7009 §2.2)')
    await sleep(2500)
  })

  t.test('every auth instance down: the JWKS is served from the cache and notes keeps verifying', async (t) => {
    const cached = await gateway.request('GET', '/.well-known/jwks.json')
    t.equal(cached.status, 200)
    for (const instance of auth) {
      instance.process.kill('SIGKILL')
      await instance.exited
    }
    await sleep(2200) // past the JWKS max-age (1 s) and notes' key cache (1 s)
    const stale = await gateway.request('GET', '/.well-known/jwks.json')
    t.equal(stale.status, 200)
    t.equal(stale.body, cached.body, 'the same key set')
    const staleLine = (): string | undefined => gateway.accessLog().find((line) => line.includes(`"request_id":"${String(stale.headers['x-request-id'])}"`))
    t.ok(await within(15_000, async () => staleLine() !== undefined) !== undefined, 'the stale answer is logged')
    t.match(JSON.parse(staleLine() ?? '{}'), { path: '/.well-known/jwks.json', cache: 'STALE' })
    t.equal((await gateway.request('GET', '/notes', { headers: bearer(alice.access) })).status, 200, 'notes still verifies a token it could verify before')
    const refused = await login('alice')
    t.equal(refused.status, 502, 'logins, of course, fail')
    t.same(refused.json(), { error: 'temporarily_unavailable', error_description: 'no instance took the request; retry shortly' }, 'in RFC 6749\'s format on /oauth/, not an HTML page')
    t.equal(refused.headers['retry-after'], '1', 'nothing was done: retry in a second')
    t.equal(refused.headers['cache-control'], 'no-store')
    t.equal(refused.headers['x-content-type-options'], 'nosniff', 'the security headers are still there')
    // The locations with error pages of their own (their limits) answer a 502 in JSON too.
    for (const [method, path, body] of [['POST', '/v1/users', { username: 'zed', password: 'correct horse battery' }], ['PUT', '/v1/password', { current_password: 'a', new_password: 'b' }]] as const) {
      const down = await gateway.request(method, path, { body, headers: bearer(alice.access) })
      t.equal(down.status, 502, `${method} ${path}`)
      t.match(down.headers['content-type'], /^application\/problem\+json/, `${method} ${path}: problem+json, not Nginx's HTML page`)
      t.equal(down.headers['retry-after'], '1')
    }
    const me = await gateway.request('GET', '/v1/me', { headers: bearer(alice.access) })
    t.equal(me.status, 502)
    t.match(me.headers['content-type'], /^application\/problem\+json/)
    t.same(me.json(), { type: 'about:blank', title: 'Bad Gateway', status: 502, detail: 'no instance took the request; retry shortly', instance: '/v1/me', request_id: me.headers['x-request-id'] }, 'problem+json elsewhere, its instance the path as Tessera\'s are (RFC 9457)')
    // The path as sent, encoded as it came and without its query string, as Tessera's instance is.
    const encoded = await gateway.request('GET', '/v1/m%65/a%22b;c=d?x=1', { headers: bearer(alice.access) })
    t.same([encoded.status, encoded.json().instance], [502, '/v1/m%65/a%22b;c=d'], 'an encoded path: as sent, the query left off')
    // A path of characters RFC 3986 does not allow, which Nginx passes on: without an instance, rather than a body that is not JSON.
    const raw = await rawRequest(gateway, 'GET /v1/a"b\\c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { halfClose: false })
    t.match(raw, /^HTTP\/1\.1 502 /)
    t.same(JSON.parse(raw.split('\r\n\r\n')[1] ?? 'null'), { type: 'about:blank', title: 'Bad Gateway', status: 502, detail: 'no instance took the request; retry shortly', request_id: /\r\nx-request-id: ([0-9a-f]{32})\r\n/i.exec(raw)?.[1] }, 'a quote and a backslash in the path: no instance, the body still JSON')
  })
})

/** A stand-in auth instance on 127.0.0.1: `handle` sees each request once its body is read, and `seen` names them. */
async function standIn (t: Test, name: string, seen: string[], handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      seen.push(`${name} ${req.method ?? ''} ${req.url ?? ''}`)
      handle(req, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return `127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('a request an instance received is never re-sent to another, a PUT or a DELETE no more than a POST', async (t) => {
  const seen: string[] = []
  // One instance takes each request and dies with it in hand; the other would answer.
  const dying = await standIn(t, 'dying', seen, (_req, res) => { res.socket?.destroy() })
  const answering = await standIn(t, 'answering', seen, (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{}') })
  const gateway = await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [dying, answering], notesAddr: answering, tls: makeCertificate(tempDir(t, 'tls')) })
  const sent = [
    ['PUT', '/v1/password', { body: { current_password: 'a', new_password: 'b' } }],
    ['DELETE', '/v1/sessions/6f0c1f6e-2f3a-4c55-9a8e-3b1d7f2a9c10', {}],
    ['POST', '/oauth/token', { body: 'grant_type=refresh_token&refresh_token=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }]
  ] as const
  for (let round = 0; round < 2; round++) {
    for (const [method, path, options] of sent) {
      const before = seen.length
      const answer = await gateway.request(method, path, options)
      t.ok([200, 502].includes(answer.status), `${method} ${path}: answered or refused (${answer.status})`)
      t.equal(seen.length - before, 1, `${method} ${path}: received by one instance only (${seen.slice(before).join(', ')})`)
    }
  }
  t.ok(seen.some((s) => s.startsWith('dying PUT')), 'the dying instance was given a PUT')
})

t.test('an instance that hangs: a GET of the JWKS goes to the next in seconds, not to the stale copy after 30 s', async (t) => {
  const seen: string[] = []
  const keys = '{"keys":[{"kty":"RSA","kid":"live"}]}'
  const hung = await standIn(t, 'hung', seen, () => {})
  const live = await standIn(t, 'live', seen, (_req, res) => { res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=300, s-maxage=1' }).end(keys) })
  const gateway = await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [hung, live], notesAddr: live, tls: makeCertificate(tempDir(t, 'tls')) })
  for (let i = 0; i < 3; i++) {
    const started = Date.now()
    const answer = await gateway.request('GET', '/.well-known/jwks.json')
    t.same([answer.status, answer.body], [200, keys], `GET ${i + 1}: the live instance's set`)
    t.ok(Date.now() - started < 10_000, `GET ${i + 1}: within seconds (${Date.now() - started} ms)`)
    await sleep(1100)
  }
  t.ok(seen.some((s) => s.startsWith('hung GET')), 'the hung instance was tried')
})

t.test('what the gateway refuses itself is JSON in every location, on both ports; what a client says of the address it reached is not passed on', async (t) => {
  const seen: string[] = []
  let headers: IncomingMessage['headers'] = {}
  const echo = await standIn(t, 'echo', seen, (req, res) => {
    headers = req.headers
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
  })
  const gateway = await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [echo], notesAddr: echo, tls: makeCertificate(tempDir(t, 'tls')) })
  const answerOf = (raw: string): { status: number, type: string, body: string } => {
    const [head = '', body = ''] = raw.split('\r\n\r\n')
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]), type: /\r\ncontent-type: ([^\r]*)/i.exec(head)?.[1] ?? '', body }
  }
  const chunkedGarbage = (path: string): string => `POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n`
  for (const path of ['/oauth/token', '/oauth/revoke', '/oauth/other']) {
    const answer = answerOf(await rawRequest(gateway, chunkedGarbage(path)))
    t.same([answer.status, answer.type, JSON.parse(answer.body).error], [400, 'application/json', 'invalid_request'], `${path}: a malformed chunked body is RFC 6749's invalid_request`)
  }
  for (const path of ['/v1/users', '/v1/password']) {
    const answer = answerOf(await rawRequest(gateway, chunkedGarbage(path)))
    t.same([answer.status, answer.type], [400, 'application/problem+json'], `${path}: problem+json`)
  }
  // A header line over 8 KB is refused before a location is chosen: the server's error page, which still answers /oauth/ in RFC 6749's format.
  for (const [path, format] of [['/oauth/token', 'application/json'], ['/oauth/revoke', 'application/json'], ['/v1/me', 'application/problem+json']] as const) {
    const longHeader = await gateway.request('POST', path, { body: 'token=x', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${'a'.repeat(10_000)}` } })
    t.same([longHeader.status, longHeader.headers['content-type']], [400, format], `${path}: a header line over 8 KB`)
    if (path.startsWith('/oauth/')) {
      t.same(longHeader.json(), { error: 'invalid_request', error_description: 'the request is not valid HTTP, or a header is longer than 8 KB' }, `${path}: RFC 6749's invalid_request`)
      t.equal(longHeader.headers['cache-control'], 'no-store')
    } else {
      t.equal(longHeader.json().request_id, longHeader.headers['x-request-id'], `${path}: a problem naming its request`)
    }
  }
  // So is a request line over 8 KB, and a URI Nginx cannot read: each in the format of the path it names.
  const long = await gateway.request('GET', `/v1/me?x=${'a'.repeat(9000)}`)
  t.same([long.status, long.headers['content-type'], long.json().status], [414, 'application/problem+json', 414], 'a request line over 8 KB')
  t.equal(long.json().request_id, long.headers['x-request-id'])
  const oauthLong = await gateway.request('GET', `/oauth/token?x=${'a'.repeat(9000)}`)
  t.same([oauthLong.status, oauthLong.headers['content-type'], oauthLong.json()], [414, 'application/json', { error: 'invalid_request', error_description: 'the request line is longer than 8 KB' }], 'on /oauth/: RFC 6749\'s invalid_request')
  t.equal(oauthLong.headers['cache-control'], 'no-store')
  t.match(oauthLong.headers['x-request-id'], /^[0-9a-f]{32}$/)
  const badUri = answerOf(await rawRequest(gateway, 'GET /oauth/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
  t.same([badUri.status, badUri.type, JSON.parse(badUri.body).error], [400, 'application/json', 'invalid_request'], 'a URI Nginx cannot read, on /oauth/')
  const inside = await gateway.request('GET', '/.tessera-gateway/bad-request')
  t.same([inside.status, inside.headers['content-type']], [404, 'application/problem+json'], 'the gateway\'s internal paths, asked for from outside')
  const plain = await gateway.plainRequest('POST', '/oauth/token', { body: 'x'.repeat(20_000), headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.same([plain.status, plain.headers['content-type']], [400, 'application/problem+json'], 'plain HTTP, a body over the limit')

  await gateway.request('GET', '/.well-known/openid-configuration', { headers: { 'x-forwarded-host': 'evil.example', 'x-forwarded-port': '1', forwarded: 'host=evil.example', 'x-forwarded-for': '6.6.6.6' } })
  t.notOk('x-forwarded-host' in headers || 'x-forwarded-port' in headers || 'forwarded' in headers, 'X-Forwarded-Host, X-Forwarded-Port and Forwarded are dropped')
  t.equal(headers['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the address the gateway saw')
})

t.test('on SimpleJWT\'s routes, what the gateway answers itself is DRF\'s {"detail"}, never an HTML page or a problem', async (t) => {
  const seen: string[] = []
  // Takes each request and dies with it in hand: Nginx's 502.
  const dying = await standIn(t, 'dying', seen, (_req, res) => { res.socket?.destroy() })
  const gateway = await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [dying], notesAddr: dying, tls: makeCertificate(tempDir(t, 'tls')), simplejwtCompat: true })
  const headOf = (raw: string): string => raw.split('\r\n\r\n')[0] ?? ''
  const garbage = await rawRequest(gateway, 'POST /api/token/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n')
  t.match(headOf(garbage), /^HTTP\/1\.1 400 /, 'a malformed chunked body: 400')
  t.match(headOf(garbage), /\r\ncontent-type: application\/json\r\n/i)
  t.same(JSON.parse(garbage.split('\r\n\r\n')[1] ?? ''), { detail: 'the request is not valid HTTP, or a header is longer than 8 KB' })
  // Refused before a location is chosen, so not by the prefix's own error pages: the path still picks DRF's format.
  for (const path of ['/api/token/', '/api/token/refresh/']) {
    const longHeader = await gateway.request('POST', path, { body: { refresh: 'x' }, headers: { authorization: `Bearer ${'a'.repeat(10_000)}` } })
    t.same([longHeader.status, longHeader.headers['content-type'], longHeader.json()], [400, 'application/json', { detail: 'the request is not valid HTTP, or a header is longer than 8 KB' }], `${path}: a header line over 8 KB`)
    t.match(longHeader.headers['x-request-id'], /^[0-9a-f]{32}$/)
  }
  const longLine = await gateway.request('POST', `/api/token/?x=${'a'.repeat(9000)}`, { body: { refresh: 'x' } })
  t.same([longLine.status, longLine.headers['content-type'], longLine.json()], [414, 'application/json', { detail: 'the request line is longer than 8 KB' }], 'a request line over 8 KB')
  t.match(longLine.headers['x-request-id'], /^[0-9a-f]{32}$/)
  const badUri = await rawRequest(gateway, 'POST /api/token/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.same(JSON.parse(badUri.split('\r\n\r\n')[1] ?? ''), { detail: 'the request is not valid HTTP, or a header is longer than 8 KB' }, 'a URI Nginx cannot read')
  t.equal((await gateway.request('GET', `/api/tokens/?x=${'a'.repeat(9000)}`)).headers['content-type'], 'application/problem+json', 'only the prefix itself: a path that merely begins alike is problem+json')
  const big = await gateway.request('POST', '/api/token/', { body: { username: 'alice', password: 'x'.repeat(64 * 1024) } })
  t.same([big.status, big.headers['content-type'], big.json()], [413, 'application/json', { detail: 'the body is larger than 16384 bytes' }], 'a body over the limit, as Tessera says it on these routes')
  t.equal(big.headers['x-content-type-options'], 'nosniff', 'with the security headers')
  const down = await gateway.request('POST', '/api/token/refresh/', { body: { refresh: 'x' } })
  t.same([down.status, down.headers['content-type'], down.json()], [502, 'application/json', { detail: 'no instance took the request; retry shortly' }], 'no instance answered')
  t.equal(down.headers['retry-after'], '1')
  t.match(down.headers['x-request-id'], /^[0-9a-f]{32}$/)
  const before = seen.length
  const unslashed = await gateway.request('POST', '/api/token', { body: { username: 'alice', password: 'x' } })
  t.not(unslashed.status, 301, 'the prefix without its slash is not Nginx\'s HTML redirect')
  t.equal(seen.length - before, 1, 'it is Tessera\'s to answer')
})

t.test('a credential in the URL is refused on every route, so error.log, which writes the request line of a request it fails to proxy, never holds one', async (t) => {
  // No instance at all: every request that is proxied fails, and error.log writes its request line.
  const nobody = `127.0.0.1:${await freePort()}`
  const gateway = await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [nobody], notesAddr: nobody, tls: makeCertificate(tempDir(t, 'tls')), simplejwtCompat: true })
  const secret = 'UrlSecret9c41'
  const refusal = 'a credential in the URL is refused: send a token in the Authorization header, anything else in the request body'
  const big = { body: 'x'.repeat(20_000), headers: { 'content-type': 'application/x-www-form-urlencoded' } }
  for (const [method, path, options] of [
    ['GET', `/v1/me?access_token=${secret}`, {}],
    ['GET', `/v1/sessions?limit=5&Access_Token=${secret}`, {}],
    ['GET', `/notes?access_token=${secret}`, {}],
    ['GET', `/.well-known/jwks.json?access_token=${secret}`, {}],
    // Over the body limit too: a 413 would write the request line as well.
    ['POST', `/v1/logout?refresh_token=${secret}`, big]
  ] as const) {
    const answer = await gateway.request(method, path, options)
    t.same([answer.status, answer.headers['content-type'], answer.json().detail], [400, 'application/problem+json', refusal], `${method} ${path.split('?')[0] ?? ''}: refused as a problem`)
    t.equal(answer.json().request_id, answer.headers['x-request-id'])
  }
  const oauth = await gateway.request('POST', `/oauth/introspect?token=${secret}`, big)
  t.same([oauth.status, oauth.json(), oauth.headers['cache-control']], [400, { error: 'invalid_request', error_description: refusal }, 'no-store'], 'on /oauth/: RFC 6749\'s invalid_request')
  const drf = await gateway.request('POST', `/api/token/refresh/?refresh=${secret}`, { body: { refresh: 'x' } })
  t.same([drf.status, drf.json()], [400, { detail: refusal }], 'on SimpleJWT\'s prefix: DRF\'s {"detail"}')
  const plain = await gateway.plainRequest('GET', `/v1/me?access_token=${secret}`)
  t.same([plain.status, plain.headers['content-type']], [403, 'application/problem+json'], 'plain HTTP: refused, not redirected to send it again')
  t.match(plain.body, '"detail":"plain HTTP is refused for credentials; use https"')

  // The same requests without the credential reach for an instance, and error.log writes each: it would have written the secret.
  t.equal((await gateway.request('GET', '/v1/me?limit=5')).status, 502)
  t.equal((await gateway.request('POST', '/v1/logout?limit=5', big)).status, 413)
  t.ok(await within(15_000, async () => gateway.errorLog().includes('GET /v1/me?limit=5') && gateway.errorLog().includes('POST /v1/logout?limit=5')) !== undefined, 'error.log writes request lines, query strings included')
  t.notOk(gateway.errorLog().includes(secret), 'and none with the credential')
  // Read once the last request's line is in: Nginx writes it after the answer has gone.
  await gateway.accessLogOf(1, (line) => (JSON.parse(line) as { status: number }).status === 413)
  t.notOk(gateway.accessLog().some((line) => line.includes(secret)), 'nor does the access log')
})

t.test('a token in the path is refused on https as one in the query string is, and no log writes it: neither log on https, nor the access log on plain HTTP', async (t) => {
  // No instance at all, as above: whatever is proxied fails, and error.log writes its request line.
  const nobody = `127.0.0.1:${await freePort()}`
  const gateway = await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [nobody], notesAddr: nobody, tls: makeCertificate(tempDir(t, 'tls')), simplejwtCompat: true })
  // A JWS's shape: base64url of a JSON header (so `eyJ`), a dot, the rest; the last part is what to look for.
  const token = `${Buffer.from('{"alg":"RS256","typ":"at+jwt"}').toString('base64url')}.eyJzdWIiOiJhIn0.PathSecret5d8e`
  const secret = 'PathSecret5d8e'
  const refusal = 'a credential in the URL is refused: send a token in the Authorization header, anything else in the request body'
  for (const path of [`/notes/${token}`, `/v1/sessions/${token}`, `/${token}`, `/notes/%65${token.slice(1)}`]) {
    const answer = await gateway.request('GET', path)
    t.same([answer.status, answer.headers['content-type'], answer.json().detail], [400, 'application/problem+json', refusal], `GET ${path.slice(0, 12)}…: refused as a problem`)
    const plain = await gateway.plainRequest('GET', path)
    t.same([plain.status, plain.headers.location], [403, undefined], `GET ${path.slice(0, 12)}…: refused on plain HTTP, not redirected`)
  }
  const oauth = await gateway.request('POST', `/oauth/revoke/${token}`, { body: 'token=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.same([oauth.status, oauth.json()], [400, { error: 'invalid_request', error_description: refusal }], 'on /oauth/: RFC 6749\'s invalid_request')
  const drf = await gateway.request('POST', `/api/token/refresh/${token}/`, { body: { refresh: 'x' } })
  t.same([drf.status, drf.json()], [400, { detail: refusal }], 'on SimpleJWT\'s prefix: DRF\'s {"detail"}')
  // Not a token: passed on (502, no instance), and its path logged as it came.
  t.equal((await gateway.request('GET', '/notes/eyJhb')).status, 502, 'a path merely starting eyJ is passed on')
  t.ok(await within(15_000, async () => gateway.errorLog().includes('GET /notes/eyJhb ')) !== undefined, 'error.log writes the request lines it could not proxy')
  t.notOk(gateway.errorLog().includes(secret), 'and none of the refused ones')
  // The last request's line, written after its answer has gone (and later still on a busy machine): the log is read once it is in.
  t.equal((await gateway.accessLogOf(1, (line) => (JSON.parse(line) as { path: string }).path === '/notes/eyJhb')).length, 1, 'a path without one is logged as it is')
  const logged = gateway.accessLog().map((line) => JSON.parse(line) as { path: string, status: number })
  t.notOk(logged.some((line) => line.path.includes(secret)), 'nor does the access log')
  t.ok(logged.some((line) => line.status === 403 && line.path === '/notes/[token]'), 'plain HTTP\'s refusal is logged with the path up to the token')
})

t.test('a credential\'s name percent-encoded is refused as the name itself is (Tessera decodes a name before reading it); a flag named refresh or token passes', async (t) => {
  // No instance at all, as above: whatever is proxied fails, and error.log writes its request line.
  const nobody = `127.0.0.1:${await freePort()}`
  const gateway = await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [nobody], notesAddr: nobody, tls: makeCertificate(tempDir(t, 'tls')), simplejwtCompat: true })
  const secret = 'EncodedSecret7f2b'
  const refusal = 'a credential in the URL is refused: send a token in the Authorization header, anything else in the request body'
  const queries = [
    `access%5Ftoken=${secret}`,
    `%61ccess_token=${secret}`,
    `%61%63%63%65%73%73%5f%74%6f%6b%65%6e=${secret}`,
    `ACCESS%5FTOKEN=${secret}`,
    // Double-encoded, for a server that decodes twice.
    `access%255Ftoken=${secret}`,
    // A name with no value: a server that decodes the query string before splitting it reads access_token=<secret>.
    `access_token%3D${secret}`,
    `limit=5&refresh%5Ftoken=${secret}`,
    `client%5Fsecret=${secret}`,
    `pass%77ord=${secret}`,
    `%74oken=${secret}`,
    // The generic names still refuse anything that could be a token.
    `token=${secret}`,
    `access=${secret}`,
    `refresh=1&refresh=${secret}`,
    `refresh=1${secret}`
  ]
  for (const query of queries) {
    const problem = await gateway.request('GET', `/v1/me?${query}`)
    t.same([problem.status, problem.headers['content-type'], problem.json().detail], [400, 'application/problem+json', refusal], `?${query}: refused as a problem`)
    t.equal(problem.json().request_id, problem.headers['x-request-id'])
    const notes = await gateway.request('GET', `/notes?${query}`)
    t.same([notes.status, notes.json().detail], [400, refusal], `?${query}: on notes too`)
    const oauth = await gateway.request('POST', `/oauth/introspect?${query}`, { body: 'token=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
    t.same([oauth.status, oauth.json(), oauth.headers['cache-control']], [400, { error: 'invalid_request', error_description: refusal }, 'no-store'], `?${query}: on /oauth/, RFC 6749's invalid_request`)
    const drf = await gateway.request('POST', `/api/token/refresh/?${query}`, { body: { refresh: 'x' } })
    t.same([drf.status, drf.json()], [400, { detail: refusal }], `?${query}: on SimpleJWT's prefix, DRF's {"detail"}`)
    const plain = await gateway.plainRequest('GET', `/v1/me?${query}`)
    t.same([plain.status, plain.headers.location], [403, undefined], `?${query}: refused on plain HTTP, not redirected`)
  }

  // What carries no credential is proxied (502: no instance), and error.log writes each request line.
  const passed = ['refresh=1', 'token=', 'access=true&refresh=FALSE', 'limit=5&v=%2Fa%20b', 'refreshed=x&tokens=y&access_tokens_seen=3']
  for (const query of passed) {
    const answer = await gateway.request('GET', `/v1/me?${query}`)
    t.same([answer.status, answer.json().title], [502, 'Bad Gateway'], `?${query}: passed on`)
    t.equal((await gateway.plainRequest('GET', `/v1/me?${query}`)).status, 301, `?${query}: redirected on plain HTTP`)
  }
  t.ok(await within(15_000, async () => passed.every((query) => gateway.errorLog().includes(`GET /v1/me?${query} `))) !== undefined, 'error.log writes the request lines it could not proxy, query strings included')
  t.notOk(gateway.errorLog().includes(secret), 'and none of the refused ones')
  // Read once the last requests' lines (the plain HTTP redirects) are in: Nginx writes each after its answer has gone.
  await gateway.accessLogOf(passed.length, (line) => (JSON.parse(line) as { status: number }).status === 301)
  t.notOk(gateway.accessLog().some((line) => line.includes(secret)), 'nor does the access log')
})

t.test('an HTTP/1.0 request without a Host reaches the instance with one, and is answered', async (t) => {
  const seen: string[] = []
  const hosts: Array<string | undefined> = []
  const echo = await standIn(t, 'echo', seen, (req, res) => {
    hosts.push(req.headers.host)
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
  })
  const gateway = await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [echo], notesAddr: echo, tls: makeCertificate(tempDir(t, 'tls')) })
  for (const path of ['/.well-known/openid-configuration', '/notes']) {
    const raw = await rawRequest(gateway, `GET ${path} HTTP/1.0\r\n\r\n`, { halfClose: false })
    t.match(raw, /^HTTP\/1\.1 200 /, `${path}: answered (Node refuses an HTTP/1.1 request without a Host: a 400 with no body)`)
  }
  t.equal(seen.length, 2, 'both reached the instance')
  t.same(hosts, ['tessera_auth', 'tessera_notes'], 'with Nginx\'s own default Host')
  await gateway.request('GET', '/.well-known/openid-configuration')
  t.equal(hosts[2], '127.0.0.1', 'a client\'s Host is still the one passed on')
})

/**
 * The gateway behind a load balancer (GATEWAY_TRUSTED_PROXIES): through a
 * real Nginx and a real Tessera, the client the trusted hops vouch for is the
 * address Tessera records and the key of limit_req; anyone else's
 * X-Forwarded-For is believed no more than before. The setting is checked
 * where it is rendered, natively (scripts/render-nginx.mjs) and under Docker
 * (nginx/docker-entrypoint.d/'s .envsh), the two alike; empty, it renders
 * nothing.
 */
import { spawnSync } from 'node:child_process'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { freePort } from '@tessera/testkit'
import t, { type Test } from 'tap'
import { createTestDatabase } from '../helpers/db.js'
import { makeCertificate, nginxBinary, REPO_ROOT, startGateway, tempDir, type Gateway } from '../helpers/gateway.js'
import { startServer } from '../helpers/server.js'

const PASSWORD = 'correct horse battery'
const ENVSH = 'nginx/docker-entrypoint.d/19-tessera-trusted-proxies.envsh'

/** render-nginx.mjs into a fresh prefix, with GATEWAY_TRUSTED_PROXIES unset when `value` is undefined. */
function renderNative (t: Test, value: string | undefined, shared: { cert: string, key: string, cacheDir: string }): { status: number | null, conf: string, stderr: string, prefix: string } {
  const prefix = tempDir(t, 'real-ip')
  // Every path the same whatever the prefix, so that two renders compare byte for byte.
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', GATEWAY_TLS_CERT: shared.cert, GATEWAY_TLS_KEY: shared.key, GATEWAY_CACHE_DIR: shared.cacheDir, GATEWAY_ACCESS_LOG: '/dev/null' }
  if (value !== undefined) env.GATEWAY_TRUSTED_PROXIES = value
  const run = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/render-nginx.mjs'), prefix], { encoding: 'utf8', env })
  const conf = run.status === 0 ? readFileSync(join(prefix, 'conf.d/tessera.conf'), 'utf8') : ''
  return { status: run.status, conf, stderr: run.stderr, prefix }
}

/** The .envsh sourced as the official image's entrypoint sources it (sh, set -e): what it exports as GATEWAY_REAL_IP. */
function renderDocker (value: string): { status: number | null, lines: string, stderr: string } {
  const run = spawnSync('sh', ['-c', `set -e; . ./${ENVSH}; printf '%s' "$GATEWAY_REAL_IP"`], { cwd: REPO_ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', GATEWAY_TRUSTED_PROXIES: value } })
  return { status: run.status, lines: run.stdout, stderr: run.stderr }
}

/** The lines the template's placeholder got, in front of the first limit_req_zone. */
const realIpLines = (conf: string): string => {
  const zone = conf.indexOf('limit_req_zone ')
  return conf.slice(conf.lastIndexOf('\n\n', zone) + 2, zone).split('\n').filter((line) => !line.startsWith('#') && line !== '').map((line) => `${line}\n`).join('')
}

t.test('GATEWAY_TRUSTED_PROXIES is checked where the template is rendered, natively and under Docker alike', async (t) => {
  const tls = { ...makeCertificate(tempDir(t, 'tls')), cacheDir: tempDir(t, 'cache') }
  const unset = renderNative(t, undefined, tls)
  t.equal(unset.status, 0, unset.stderr)
  t.notMatch(unset.conf, /real_ip/, 'unset: no realip directive at all')
  for (const empty of ['', ' ', ' , ']) {
    t.equal(renderNative(t, empty, tls).conf, unset.conf, `${JSON.stringify(empty)}: the same configuration, byte for byte, as when unset`)
    t.same(renderDocker(empty), { status: 0, lines: '', stderr: '' }, `${JSON.stringify(empty)}: the .envsh exports nothing to render`)
  }

  const accepted: Array<[string, string[]]> = [
    ['127.0.0.1/32', ['127.0.0.1/32']],
    ['10.0.0.0/8, 192.168.0.0/16', ['10.0.0.0/8', '192.168.0.0/16']],
    ['172.31.4.9 2001:db8::/32,::1', ['172.31.4.9', '2001:db8::/32', '::1']],
    ['::ffff:10.0.0.1/128\n1:2:3:4:5:6:7::', ['::ffff:10.0.0.1/128', '1:2:3:4:5:6:7::']]
  ]
  for (const [value, entries] of accepted) {
    const lines = `${entries.map((entry) => `set_real_ip_from ${entry};\n`).join('')}real_ip_header X-Forwarded-For;\nreal_ip_recursive on;\n`
    const native = renderNative(t, value, tls)
    t.equal(native.status, 0, native.stderr)
    t.equal(realIpLines(native.conf), lines, `${JSON.stringify(value)}: a set_real_ip_from each, the header, recursive`)
    t.equal(native.conf.replace(lines, ''), unset.conf, 'and nothing else changed')
    t.same(renderDocker(value), { status: 0, lines, stderr: '' }, 'the .envsh exports the same lines')
    const check = spawnSync(nginxBinary(), ['-t', '-p', native.prefix, '-c', join(native.prefix, 'nginx.conf'), '-e', join(native.prefix, 'error.log')], { encoding: 'utf8' })
    t.equal(check.status, 0, `nginx -t: ${check.stderr}`)
  }

  const notAnAddress = 'is not an IPv4 or IPv6 address or CIDR (such as 10.0.0.0/8 or 2001:db8::/32)'
  const anyone = 'would believe the X-Forwarded-For of any client: name the load balancers\' own addresses'
  const refused: Array<[string, string, string]> = [
    ['0.0.0.0/0', '0.0.0.0/0', anyone],
    ['::/0', '::/0', anyone],
    ['10.0.0.0/8, 10.1.2.3/0', '10.1.2.3/0', anyone],
    ['lb.example.com', 'lb.example.com', notAnAddress],
    ['unix:', 'unix:', notAnAddress],
    ['10.0.0.1;allow', '10.0.0.1;allow', notAnAddress],
    ['10.0.0.1; real_ip_header X-Real-IP', '10.0.0.1;', notAnAddress],
    ['*', '*', notAnAddress],
    ['10.0.0.256', '10.0.0.256', notAnAddress],
    ['010.0.0.1', '010.0.0.1', notAnAddress],
    ['fe80::1%eth0', 'fe80::1%eth0', notAnAddress],
    ['1::2::3', '1::2::3', notAnAddress],
    ['1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8:9', notAnAddress],
    ['10.0.0.0/8/8', '10.0.0.0/8/8', notAnAddress],
    ['10.0.0.0/33', '10.0.0.0/33', 'has a prefix length that is not 1-32'],
    ['10.0.0.0/', '10.0.0.0/', 'has a prefix length that is not 1-32'],
    ['10.0.0.0/08', '10.0.0.0/08', 'has a prefix length that is not 1-32'],
    ['2001:db8::/129', '2001:db8::/129', 'has a prefix length that is not 1-128']
  ]
  for (const [value, entry, why] of refused) {
    const message = `GATEWAY_TRUSTED_PROXIES: ${JSON.stringify(entry)} ${why}\n`
    const native = renderNative(t, value, tls)
    t.same([native.status, native.stderr], [1, `render-nginx: ${message}`], `${JSON.stringify(value)}: refused natively, one line, no stack`)
    t.same(renderDocker(value), { status: 1, lines: '', stderr: message }, 'and under Docker, where the entrypoint stops before Nginx starts')
  }
})

t.test('docker-compose.yml hands the .envsh to the official image, executable, so its entrypoint sources it', async (t) => {
  const compose = readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')
  t.match(compose, `- ./${ENVSH}:/docker-entrypoint.d/19-tessera-trusted-proxies.envsh:ro`, 'mounted where the entrypoint looks, before its 20-envsubst-on-templates.sh')
  t.match(compose, /GATEWAY_TRUSTED_PROXIES: "\$\{GATEWAY_TRUSTED_PROXIES:-\}"/, 'from .env, empty by default')
  t.notMatch(compose, /GATEWAY_REAL_IP:/, 'never set directly: only the .envsh, from the checked list, sets it')
  t.ok((statSync(join(REPO_ROOT, ENVSH)).mode & 0o111) !== 0, 'executable: the entrypoint ignores an .envsh that is not')
  const mode = spawnSync('git', ['ls-files', '-s', ENVSH], { cwd: REPO_ROOT, encoding: 'utf8' }).stdout
  t.match(mode, /^100755 /, 'and so in git, for every checkout')
})

/** An upstream that records the headers it was sent, standing in for notes. */
async function recorder (t: Test): Promise<{ addr: string, last: () => IncomingHttpHeaders }> {
  let headers: IncomingHttpHeaders = {}
  const server = createServer((req, res) => {
    headers = req.headers
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"notes":[]}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, last: () => headers }
}

t.test('behind a trusted load balancer, through a real Nginx and Tessera', async (t) => {
  const tls = makeCertificate(tempDir(t, 'tls'))
  const auth = await startServer(t, {
    DATABASE_URL: await createTestDatabase(t),
    TESSERA_KEK: randomBytes(32).toString('base64url'),
    TESSERA_ISSUER: 'https://127.0.0.1',
    // Tessera's trust stays the gateway's own address.
    TESSERA_TRUST_PROXY: '127.0.0.1'
  })
  const notes = await recorder(t)
  // One sign-up a minute and a burst of one: a bucket emptied here stays empty for the test.
  const settings = { GATEWAY_SIGNUP_RATE: '1r/m', GATEWAY_SIGNUP_BURST: '1' }
  const start = async (trustedProxies?: string): Promise<Gateway> => await startGateway(t, { httpPort: await freePort(), httpsPort: await freePort(), authAddrs: [new URL(auth.url).host], notesAddr: notes.addr, tls, trustedProxies, settings })
  const behindBalancer = await start('127.0.0.1/32')
  const today = await start()

  const signUp = await fetch(`${auth.url}/v1/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: PASSWORD }) })
  t.equal(signUp.status, 201, 'alice signed up directly at the instance')

  /** The `ip` Tessera records for a session logged in through `gateway`, from `localAddress`, with this X-Forwarded-For. */
  const sessionIp = async (gateway: Gateway, forwardedFor: string, localAddress = '127.0.0.1'): Promise<string | undefined> => {
    const headers = { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': forwardedFor }
    const login = await gateway.request('POST', '/oauth/token', { localAddress, headers, body: new URLSearchParams({ grant_type: 'password', username: 'alice', password: PASSWORD }).toString() })
    if (login.status !== 200) throw new Error(`login failed: ${login.status} ${login.body}`)
    const sessions = await gateway.request('GET', '/v1/sessions', { localAddress, headers: { authorization: `Bearer ${login.json().access_token as string}` } })
    return (sessions.json().sessions as Array<{ ip: string, current: boolean }>).find((s) => s.current)?.ip
  }

  t.test('the client the balancer vouches for is the one Tessera records', async (t) => {
    t.equal(await sessionIp(behindBalancer, '203.0.113.7'), '203.0.113.7', 'from the trusted balancer: its X-Forwarded-For')
    t.equal(await sessionIp(behindBalancer, '1.2.3.4, 203.0.113.7'), '203.0.113.7', 'a chain: the rightmost hop the balancer did not vouch for, never what the client wrote before it')
    t.equal(await sessionIp(behindBalancer, '203.0.113.9, 127.0.0.1'), '203.0.113.9', 'read from the right past every trusted hop (real_ip_recursive)')
    t.equal(await sessionIp(behindBalancer, '203.0.113.7', '127.0.0.2'), '127.0.0.2', 'from an address not trusted: its X-Forwarded-For is not believed')
    // The last session's two lines (its login and its listing) come after their answers have gone: the log is read once they are in.
    await behindBalancer.accessLogOf(2, (line) => JSON.parse(line).remote_addr === '127.0.0.2')
    const logged = behindBalancer.accessLog().map((line) => JSON.parse(line).remote_addr as string)
    t.ok(logged.includes('203.0.113.7') && logged.includes('127.0.0.2') && !logged.includes('1.2.3.4'), 'the access log\'s remote_addr is that client too')
  })

  t.test('the gateway still replaces X-Forwarded-For and X-Real-IP with that one address', async (t) => {
    const listed = await behindBalancer.request('GET', '/notes', { headers: { 'x-forwarded-for': '1.2.3.4, 203.0.113.7', 'x-real-ip': '6.6.6.6' } })
    t.equal(listed.status, 200)
    t.same([notes.last()['x-forwarded-for'], notes.last()['x-real-ip']], ['203.0.113.7', '203.0.113.7'], 'no chain passed on: Tessera trusts the gateway only')
  })

  t.test('with the setting empty, today\'s behaviour: the address Nginx saw', async (t) => {
    t.equal(await sessionIp(today, '203.0.113.7'), '127.0.0.1')
    t.equal(await sessionIp(today, '203.0.113.7', '127.0.0.2'), '127.0.0.2')
  })

  t.test('limit_req: each forwarded client has a bucket of its own', async (t) => {
    const signUpAs = async (gateway: Gateway, forwardedFor: string): Promise<number> =>
      (await gateway.request('POST', '/v1/users', { headers: { 'x-forwarded-for': forwardedFor }, body: { username: 'x' } })).status
    /** Sign-ups from one forwarded client until the gateway refuses one: the statuses. */
    const exhaust = async (gateway: Gateway, forwardedFor: string): Promise<number[]> => {
      const statuses: number[] = []
      while (!statuses.includes(429) && statuses.length < 10) statuses.push(await signUpAs(gateway, forwardedFor))
      return statuses
    }
    t.same(await exhaust(behindBalancer, '198.51.100.1'), [400, 400, 429], 'behind the balancer: the first client\'s burst spent, then refused')
    t.equal(await signUpAs(behindBalancer, '198.51.100.2'), 400, 'another client through the same balancer is still served (Tessera\'s 400: no password)')
    t.equal(await signUpAs(behindBalancer, '198.51.100.1'), 429, 'while the first stays refused')
    // The control: without the setting every client is the balancer, one bucket for all.
    t.same(await exhaust(today, '198.51.100.1'), [400, 400, 429])
    t.equal(await signUpAs(today, '198.51.100.2'), 429, 'today: the second client shares the first one\'s empty bucket')

    t.test('an IPv6 client has one bucket for its /64, as Tessera counts it; an IPv4-mapped one is its IPv4 client', async (t) => {
      t.same(await exhaust(behindBalancer, '2001:db8:1:2::1'), [400, 400, 429], 'one address of 2001:db8:1:2::/64 spends the burst')
      for (const sibling of ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:DB8:1:2:0:0:0:7', '2001:db8:1:2:aaaa::1']) {
        t.equal(await signUpAs(behindBalancer, sibling), 429, `${sibling}: another address of the same /64 shares the empty bucket`)
      }
      t.equal(await signUpAs(behindBalancer, '2001:db8:1:3::1'), 400, 'the next /64 has a bucket of its own')
      t.equal(await signUpAs(behindBalancer, '2001:db8:0:2::1'), 400, 'and so has a /64 differing only in its third group')
      t.same(await exhaust(behindBalancer, '198.51.100.7'), [400, 400, 429], 'an IPv4 client spends its burst')
      t.equal(await signUpAs(behindBalancer, '::ffff:198.51.100.7'), 429, 'the same client written IPv4-mapped shares its bucket')
      t.equal(await signUpAs(behindBalancer, '::ffff:198.51.100.8'), 400, 'another IPv4 client, mapped, does not')
      t.equal(await signUpAs(behindBalancer, '198.51.100.70'), 400, 'IPv4 keeps its whole address: no prefix of it is shared')
    })
  })
})

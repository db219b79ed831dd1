#!/usr/bin/env node
// Renders nginx/ for a native Nginx, as the official image's envsubst step
// does under Docker: nginx/nginx.conf.template → PREFIX/nginx.conf and
// nginx/templates/*.template → PREFIX/conf.d/*.conf, filling in ${GATEWAY_*}
// from the environment (native defaults below). Then run
//   nginx -p PREFIX -c PREFIX/nginx.conf -e PREFIX/error.log
import { spawnSync } from 'node:child_process'
import { isIPv4, isIPv6 } from 'node:net'
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const prefix = process.argv[2] === undefined ? undefined : resolve(process.argv[2])
if (prefix === undefined) {
  process.stderr.write('usage: render-nginx.mjs PREFIX_DIR   (settings from GATEWAY_* variables)\n')
  process.exit(2)
}

/** A setting the gateway cannot be rendered with: one line, as the server says it, not a stack. */
function fail (message) {
  process.stderr.write(`render-nginx: ${message}\n`)
  process.exit(1)
}

const env = process.env
const servers = (list) => list.split(',').map((a) => a.trim()).filter(Boolean)
  .map((address) => `server ${address} max_fails=2 fail_timeout=10s;`).join('\n  ')
// SimpleJWT's routes share /oauth/token's limit_req zone: they log in and refresh the same way.
// What the gateway answers there itself is in DRF's {"detail"} shape, as Tessera's own refusals
// on those routes are: a location with error pages of its own inherits none of the server's, so
// each status Nginx can produce here is named. The prefix without its slash is Tessera's 404,
// not Nginx's HTML redirect to the slashed form.
function simplejwtPrefix () {
  const prefix = env.TESSERA_SIMPLEJWT_PREFIX || '/api/token'
  if (!/^(\/[A-Za-z0-9._~-]+){1,8}$/.test(prefix)) fail(`TESSERA_SIMPLEJWT_PREFIX=${JSON.stringify(prefix)} is not a path such as /api/token`)
  return prefix
}

function simplejwtLocations (burst) {
  if (env.TESSERA_SIMPLEJWT_COMPAT !== 'on') return ''
  const prefix = simplejwtPrefix()
  // As on /oauth/token: a password or a token in the URL is refused before anything logs it.
  return `location ^~ ${prefix}/ {\n    default_type application/json;\n    if ($args) {\n      return 400 '{"detail":"parameters in the URL are refused here: send them in the request body"}\\n';\n    }\n    limit_req zone=tessera_token burst=${burst} nodelay;\n    error_page 400 494 501 505 =400 /.tessera-gateway/drf-bad-request;\n    error_page 413 @drf_too_large;\n    error_page 429 @too_many_drf;\n    error_page 502 @drf_bad_gateway;\n    error_page 504 @drf_gateway_timeout;\n    proxy_pass http://tessera_auth;\n  }\n  location = ${prefix} {\n    proxy_pass http://tessera_auth;\n  }`
}

// The same prefix picks DRF's format for what the gateway refuses before choosing a location
// (the template's map of $tessera_refusal_format): a regex on the request line, '.' escaped.
function simplejwtRefusalFormat () {
  if (env.TESSERA_SIMPLEJWT_COMPAT !== 'on') return ''
  return `"~^[A-Z]+ (https?://[^/ ]*)?${simplejwtPrefix().replaceAll('.', '\\.')}/" drf;`
}

// And the Allow of the gateway's own 405 (to TRACE) on the prefix's routes, every one a POST,
// a line of the template's map of $tessera_allowed_methods: a regex on the path, '.' escaped.
function simplejwtAllowedMethods () {
  if (env.TESSERA_SIMPLEJWT_COMPAT !== 'on') return ''
  return `"~^${simplejwtPrefix().replaceAll('.', '\\.')}/((refresh|verify|blacklist)/)?(\\?|$)" POST;`
}

// The load balancers in front of the gateway whose X-Forwarded-For it believes, as the template's
// ${GATEWAY_REAL_IP}: a set_real_ip_from per entry, then the header, read from the right past every
// trusted hop (real_ip_recursive), so $remote_addr, limit_req's key and the X-Forwarded-For sent on
// to Tessera become the client they vouch for. Nothing when empty: the configuration of before,
// byte for byte. Under Docker nginx/docker-entrypoint.d/19-tessera-trusted-proxies.envsh does the
// same, with the same checks and messages. An entry that is not an address or a CIDR is refused
// here, rather than left to Nginx (which would resolve a host name once, at start, or trust every
// Unix socket for `unix:`), and so is a /0, which would believe anyone's header. No zone id
// (fe80::1%eth0): Nginx takes none.
function realIp () {
  const entries = (env.GATEWAY_TRUSTED_PROXIES ?? '').split(/[ \t\n,]+/).filter(Boolean)
  const refuse = (entry, why) => fail(`GATEWAY_TRUSTED_PROXIES: ${JSON.stringify(entry)} ${why}`)
  for (const entry of entries) {
    const [address = '', prefix, ...rest] = entry.split('/')
    const max = isIPv4(address) ? 32 : isIPv6(address) && !address.includes('%') ? 128 : 0
    if (max === 0 || rest.length > 0) refuse(entry, 'is not an IPv4 or IPv6 address or CIDR (such as 10.0.0.0/8 or 2001:db8::/32)')
    if (prefix !== undefined && !(/^(0|[1-9][0-9]{0,2})$/.test(prefix) && Number(prefix) <= max)) refuse(entry, `has a prefix length that is not 1-${max}`)
    if (prefix === '0') refuse(entry, 'would believe the X-Forwarded-For of any client: name the load balancers\' own addresses')
  }
  if (entries.length === 0) return ''
  return `${entries.map((entry) => `set_real_ip_from ${entry};\n`).join('')}real_ip_header X-Forwarded-For;\nreal_ip_recursive on;\n`
}

const vars = {
  GATEWAY_BIND_ADDR: '127.0.0.1',
  GATEWAY_HTTP_PORT: '8080',
  GATEWAY_HTTPS_PORT: '8443',
  GATEWAY_TLS_CERT: join(root, '.data/tls/cert.pem'),
  GATEWAY_TLS_KEY: join(root, '.data/tls/key.pem'),
  GATEWAY_CACHE_DIR: join(prefix, 'cache'),
  GATEWAY_ACCESS_LOG: join(prefix, 'access.log'),
  GATEWAY_TOKEN_RATE: '10r/s',
  GATEWAY_TOKEN_BURST: '20',
  GATEWAY_SIGNUP_RATE: '2r/s',
  GATEWAY_SIGNUP_BURST: '10',
  ...Object.fromEntries(Object.entries(env).filter(([name, value]) => name.startsWith('GATEWAY_') && value !== '')),
  GATEWAY_AUTH_SERVERS: env.GATEWAY_AUTH_SERVERS ?? servers(env.GATEWAY_AUTH_ADDRS ?? '127.0.0.1:8101,127.0.0.1:8102'),
  GATEWAY_NOTES_SERVERS: env.GATEWAY_NOTES_SERVERS ?? servers(env.GATEWAY_NOTES_ADDRS ?? '127.0.0.1:8201')
}
vars.GATEWAY_SIMPLEJWT_LOCATIONS = env.GATEWAY_SIMPLEJWT_LOCATIONS ?? simplejwtLocations(vars.GATEWAY_TOKEN_BURST)
vars.GATEWAY_SIMPLEJWT_REFUSAL_FORMAT = env.GATEWAY_SIMPLEJWT_REFUSAL_FORMAT ?? simplejwtRefusalFormat()
vars.GATEWAY_SIMPLEJWT_ALLOWED_METHODS = env.GATEWAY_SIMPLEJWT_ALLOWED_METHODS ?? simplejwtAllowedMethods()
// Always from the checked list, never taken as given: that would trust whatever it named.
vars.GATEWAY_REAL_IP = realIp()

function render (file) {
  return readFileSync(file, 'utf8').replace(/\$\{([A-Z][A-Z0-9_]*)\}/g, (whole, name) => {
    if (!(name in vars)) fail(`${file}: ${name} is not set`)
    return vars[name]
  })
}

for (const dir of ['conf.d', 'tmp', vars.GATEWAY_CACHE_DIR]) mkdirSync(resolve(prefix, dir), { recursive: true })
// Started as root, Nginx's workers run as `nobody`: they must reach the prefix
// and write their cache and temporary files.
if (process.getuid?.() === 0) {
  const id = (flag) => Number(spawnSync('id', [flag, 'nobody'], { encoding: 'utf8' }).stdout.trim())
  chmodSync(prefix, 0o755)
  for (const dir of ['tmp', vars.GATEWAY_CACHE_DIR]) chownSync(resolve(prefix, dir), id('-u'), id('-g'))
}
writeFileSync(join(prefix, 'nginx.conf'), render(join(root, 'nginx/nginx.conf.template')))
for (const name of readdirSync(join(root, 'nginx/templates')).filter((n) => n.endsWith('.template'))) {
  writeFileSync(join(prefix, 'conf.d', name.replace(/\.template$/, '')), render(join(root, 'nginx/templates', name)))
}
process.stdout.write(`${join(prefix, 'nginx.conf')}\n`)

/**
 * The Nginx gateway of nginx/, rendered by scripts/render-nginx.mjs exactly as
 * `make stack` renders it, in front of the benchmark's Tessera (and notes),
 * with TLS on a free loopback port. Its per-IP limits are raised: every
 * request comes from one address, and the limit would measure itself.
 * @module
 */
import { spawn, spawnSync } from 'node:child_process'
import { promises as fs } from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import { freePort } from '@tessera/testkit'

/**
 * @typedef {object} Gateway
 * @property {string} url https://127.0.0.1:PORT
 * @property {() => Promise<void>} stop
 */

/** @param {string} file @param {string[]} args @param {NodeJS.ProcessEnv} [env] */
function must (file, args, env) {
  const result = spawnSync(file, args, { env: env ?? process.env, encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} failed: ${result.stderr || result.stdout}`)
  return result.stdout
}

/** @param {string} url */
function answers (url) {
  return new Promise((resolve) => {
    const req = https.get(url, { rejectUnauthorized: false }, (res) => { res.resume(); resolve(res.statusCode === 200) })
    req.on('error', () => resolve(false))
  })
}

/** @param {number} pid */
const alive = (pid) => { try { process.kill(pid, 0); return true } catch { return false } }

/**
 * @param {{ root: string, dir: string, auth: string[], notes: string | undefined }} options auth and notes are base URLs
 * @returns {Promise<Gateway>}
 */
export async function startGateway ({ root, dir, auth, notes }) {
  const nginx = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'].find((candidate) => spawnSync(candidate, ['-v']).status === 0)
  if (nginx === undefined) throw new Error('nginx is not installed')
  await fs.mkdir(dir, { recursive: true })
  // Started as root, Nginx's workers run as `nobody` and must enter the directory down to their cache.
  await fs.chmod(dir, 0o711)
  must('bash', [path.join(root, 'scripts/tls-cert.sh'), path.join(dir, 'tls')])
  const port = await freePort()
  const hostPort = (/** @type {string} */ url) => new URL(url).host
  const prefix = path.join(dir, 'nginx')
  must(process.execPath, [path.join(root, 'scripts/render-nginx.mjs'), prefix], {
    ...process.env,
    GATEWAY_BIND_ADDR: '127.0.0.1',
    GATEWAY_HTTP_PORT: String(await freePort()),
    GATEWAY_HTTPS_PORT: String(port),
    GATEWAY_TLS_CERT: path.join(dir, 'tls', 'cert.pem'),
    GATEWAY_TLS_KEY: path.join(dir, 'tls', 'key.pem'),
    GATEWAY_TOKEN_RATE: '100000r/s',
    GATEWAY_TOKEN_BURST: '100000',
    GATEWAY_AUTH_ADDRS: auth.map(hostPort).join(','),
    // Nothing listens there when notes is not running; only /notes would notice.
    GATEWAY_NOTES_ADDRS: notes === undefined ? '127.0.0.1:9' : hostPort(notes)
  })
  const conf = ['-p', prefix, '-c', path.join(prefix, 'nginx.conf'), '-e', path.join(prefix, 'error.log')]
  must(nginx, ['-q', '-t', ...conf])
  // Nginx daemonizes; its pid file is how it is stopped.
  await new Promise((resolve, reject) => spawn(nginx, conf, { stdio: 'ignore' }).on('exit', (code) => code === 0 ? resolve(undefined) : reject(new Error(`nginx exited ${code}`))))
  const pid = Number((await fs.readFile(path.join(prefix, 'nginx.pid'), 'utf8')).trim())
  const url = `https://127.0.0.1:${port}`
  const stop = async () => {
    if (alive(pid)) process.kill(pid, 'SIGQUIT')
    for (let i = 0; i < 100 && alive(pid); i++) await new Promise((resolve) => setTimeout(resolve, 100))
    await fs.rm(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + 20_000
  while (!(await answers(`${url}/.well-known/jwks.json`))) {
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`the gateway did not answer: ${await fs.readFile(path.join(prefix, 'error.log'), 'utf8').catch(() => '')}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return { url, stop }
}

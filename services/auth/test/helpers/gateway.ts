/**
 * A real Nginx gateway for tests, rendered from nginx/ by
 * scripts/render-nginx.mjs into a temporary prefix and run in the foreground,
 * plus a real notes process and an HTTPS client that trusts the gateway's
 * self-signed certificate.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url))
const NOTES_ENTRY = join(REPO_ROOT, 'services/notes/dist/server.js')

/** The nginx binary: on PATH, or where Debian puts it (often off a non-root PATH). Throws when absent. */
export function nginxBinary (): string {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/local/sbin']) {
    if (existsSync(join(dir, 'nginx'))) return join(dir, 'nginx')
  }
  throw new Error('nginx is not installed (apt-get install nginx): the gateway tests need a real Nginx')
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port')))
    })
  })
}

export function tempDir (t: Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tessera-${name}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A self-signed certificate from scripts/tls-cert.sh. */
export function makeCertificate (dir: string): { cert: string, key: string } {
  const result = spawnSync('bash', [join(REPO_ROOT, 'scripts/tls-cert.sh'), dir], { encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`tls-cert.sh failed: ${result.stderr}`)
  return { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') }
}

export interface Reply { status: number, headers: IncomingHttpHeaders, body: string, json: () => Record<string, unknown> }

export interface RequestOptions { headers?: Record<string, string>, body?: string | Record<string, unknown> }

function send (url: string, method: string, ca: Buffer, options: RequestOptions): Promise<Reply> {
  const body = typeof options.body === 'object' ? JSON.stringify(options.body) : options.body
  const headers: Record<string, string> = {
    ...(typeof options.body === 'object' ? { 'content-type': 'application/json' } : {}),
    ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
    ...options.headers
  }
  const make = url.startsWith('https:') ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const req = make(url, { method, headers, ca, agent: false, timeout: 30_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)))
    req.on('error', reject)
    req.end(body)
  })
}

export interface Gateway {
  origin: string
  httpPort: number
  prefix: string
  cert: string
  /** nginx -t on the rendered configuration: exit status and output. */
  configTest: { status: number | null, output: string }
  request: (method: string, path: string, options?: RequestOptions) => Promise<Reply>
  plainRequest: (method: string, path: string, options?: RequestOptions) => Promise<Reply>
  accessLog: () => string[]
}

export async function startGateway (t: Test, options: { httpPort: number, httpsPort: number, authAddrs: string[], notesAddr: string, tls: { cert: string, key: string }, simplejwtCompat?: boolean }): Promise<Gateway> {
  const nginx = nginxBinary()
  const prefix = tempDir(t, 'nginx')
  const render = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/render-nginx.mjs'), prefix], {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH ?? '',
      GATEWAY_HTTP_PORT: String(options.httpPort),
      GATEWAY_HTTPS_PORT: String(options.httpsPort),
      GATEWAY_AUTH_ADDRS: options.authAddrs.join(','),
      GATEWAY_NOTES_ADDRS: options.notesAddr,
      GATEWAY_TLS_CERT: options.tls.cert,
      GATEWAY_TLS_KEY: options.tls.key,
      TESSERA_SIMPLEJWT_COMPAT: options.simplejwtCompat === true ? 'on' : 'off'
    }
  })
  if (render.status !== 0) throw new Error(`render-nginx.mjs failed: ${render.stderr}`)
  const args = ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')]
  const check = spawnSync(nginx, ['-t', ...args], { encoding: 'utf8' })
  const configTest = { status: check.status, output: `${check.stdout}${check.stderr}` }
  if (check.status !== 0) throw new Error(`nginx -t failed:\n${configTest.output}`)

  const child = spawn(nginx, [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  })
  const ca = readFileSync(options.tls.cert)
  const origin = `https://127.0.0.1:${options.httpsPort}`
  const request = async (method: string, path: string, opts: RequestOptions = {}): Promise<Reply> => await send(`${origin}${path}`, method, ca, opts)
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${output}`)
    try {
      await request('GET', '/gateway-probe')
      break
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nginx did not start: ${String(err)} ${output}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return {
    origin,
    httpPort: options.httpPort,
    prefix,
    cert: options.tls.cert,
    configTest,
    request,
    plainRequest: async (method, path, requestOptions = {}) => await send(`http://127.0.0.1:${options.httpPort}${path}`, method, ca, requestOptions),
    accessLog: () => readFileSync(join(prefix, 'access.log'), 'utf8').split('\n').filter(Boolean)
  }
}

export interface RunningNotes { url: string, port: number, output: () => string }

/** The compiled notes service, its own process. */
export async function startNotes (t: Test, env: Record<string, string>): Promise<RunningNotes> {
  const child = spawn(process.execPath, [NOTES_ENTRY], { env: { PATH: process.env.PATH ?? '', PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`notes did not start:\n${output}`)), 30_000)
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString()
      const match = /"address":"(http:\/\/[^"]+)".*"msg":"notes is serving"/.exec(output)
      if (match?.[1] !== undefined) { clearTimeout(timer); resolve(match[1]) }
    })
    void exited.then(() => { clearTimeout(timer); reject(new Error(`notes exited:\n${output}`)) })
  })
  return { url, port: Number(new URL(url).port), output: () => output }
}

/**
 * A real Nginx gateway for tests, rendered from nginx/ by
 * scripts/render-nginx.mjs into a temporary prefix and run in the foreground,
 * plus a real notes process and an HTTPS client that trusts the gateway's
 * self-signed certificate.
 */
import { spawnSync } from 'node:child_process'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { FastifyInstance, RouteOptions } from 'fastify'
import { pino } from 'pino'
import type { Test } from 'tap'
import { atExit, request, spawnProcess, type Reply } from '@tessera/testkit'
import { linesOnceIn } from './http.js'

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url))
const NOTES_DIST = join(REPO_ROOT, 'services/notes/dist')
const NOTES_ENTRY = join(NOTES_DIST, 'server.js')

/** The nginx binary: on PATH, or where Debian puts it (often off a non-root PATH). Throws when absent. */
export function nginxBinary (): string {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/local/sbin']) {
    if (existsSync(join(dir, 'nginx'))) return join(dir, 'nginx')
  }
  throw new Error('nginx is not installed (apt-get install nginx): the gateway tests need a real Nginx')
}

/** A directory in the system's temporary directory, removed when the test ends (or a signal ends its process: at-exit.ts). */
export function tempDir (t: Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tessera-${name}-`))
  const remove = (): void => { rmSync(dir, { recursive: true, force: true }) }
  const dropRemove = atExit(remove)
  t.teardown(() => { remove(); dropRemove() })
  return dir
}

/** A self-signed certificate from scripts/tls-cert.sh. */
export function makeCertificate (dir: string): { cert: string, key: string } {
  const result = spawnSync('bash', [join(REPO_ROOT, 'scripts/tls-cert.sh'), dir], { encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`tls-cert.sh failed: ${result.stderr}`)
  return { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') }
}

export type { Reply }

export interface RequestOptions { headers?: Record<string, string>, body?: string | Record<string, unknown>, localAddress?: string }

const send = async (url: string, method: string, ca: Buffer, options: RequestOptions): Promise<Reply> => await request(url, { ...options, method, ca })

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
  /**
   * The access log's lines that `selected` picks, once there are `count` of
   * them: Nginx writes a request's line as the request finishes, which may be
   * after its client has read the answer, and later still on a busy machine.
   * Throws, naming both numbers, when they are not all there within
   * LOG_LINE_DEADLINE_MS (helpers/http.ts).
   */
  accessLogOf: (count: number, selected: (line: string) => boolean) => Promise<string[]>
  errorLog: () => string
}

/**
 * `trustedProxies` is GATEWAY_TRUSTED_PROXIES (unset when absent); `settings`, any other GATEWAY_*
 * setting to render with (a limit_req rate, say). `testConf`, http{}-level directives of the
 * test's own, written beside the rendered configuration (conf.d/zz-test.conf) and never part of
 * what ships: a server that shows one of the template's variables, say.
 */
export async function startGateway (t: Test, options: { httpPort: number, httpsPort: number, authAddrs: string[], notesAddr: string, tls: { cert: string, key: string }, simplejwtCompat?: boolean, trustedProxies?: string, settings?: Record<string, string>, testConf?: string }): Promise<Gateway> {
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
      TESSERA_SIMPLEJWT_COMPAT: options.simplejwtCompat === true ? 'on' : 'off',
      ...(options.trustedProxies === undefined ? {} : { GATEWAY_TRUSTED_PROXIES: options.trustedProxies }),
      ...options.settings
    }
  })
  if (render.status !== 0) throw new Error(`render-nginx.mjs failed: ${render.stderr}`)
  if (options.testConf !== undefined) writeFileSync(join(prefix, 'conf.d/zz-test.conf'), options.testConf)
  const args = ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')]
  const check = spawnSync(nginx, ['-t', ...args], { encoding: 'utf8' })
  const configTest = { status: check.status, output: `${check.stdout}${check.stderr}` }
  if (check.status !== 0) throw new Error(`nginx -t failed:\n${configTest.output}`)

  const nginxProcess = spawnProcess(nginx, [...args, '-g', 'daemon off;'], { env: process.env })
  t.teardown(async () => { await nginxProcess.stop('SIGTERM') })
  const ca = readFileSync(options.tls.cert)
  const origin = `https://127.0.0.1:${options.httpsPort}`
  const request = async (method: string, path: string, opts: RequestOptions = {}): Promise<Reply> => await send(`${origin}${path}`, method, ca, opts)
  const accessLog = (): string[] => readFileSync(join(prefix, 'access.log'), 'utf8').split('\n').filter(Boolean)
  const deadline = Date.now() + 15_000
  for (;;) {
    if (nginxProcess.child.exitCode !== null) throw new Error(`nginx exited: ${nginxProcess.stderr()}`)
    try {
      await request('GET', '/gateway-probe')
      break
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nginx did not start: ${String(err)} ${nginxProcess.stderr()}`)
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
    accessLog,
    accessLogOf: async (count, selected) => await linesOnceIn('the access log', count, () => accessLog().filter(selected)),
    errorLog: () => readFileSync(join(prefix, 'error.log'), 'utf8')
  }
}

export interface RunningNotes { url: string, port: number, output: () => string }

/** The compiled notes service, its own process. */
export async function startNotes (t: Test, env: Record<string, string>): Promise<RunningNotes> {
  const notes = spawnProcess(process.execPath, [NOTES_ENTRY], { env: { PATH: process.env.PATH ?? '', PORT: '0', ...env } })
  t.teardown(async () => { await notes.stop('SIGKILL') })
  const [, url = ''] = await notes.waitFor(/"address":"(http:\/\/[^"]+)".*"msg":"notes is serving"/, 30_000, 'notes')
  return { url, port: Number(new URL(url).port), output: notes.output }
}

/** What of notes' compiled modules notesRoutes uses: its entry's own steps, config → database → app. */
interface NotesModules {
  buildApp: (config: unknown, deps: { db: unknown, keys: unknown, logger: unknown }) => Promise<FastifyInstance>
  loadConfig: (env: Record<string, string>) => { databaseUrl: string, jwksUrl: string }
  connect: (databaseUrl: string) => { destroy: () => Promise<void> }
  createKeySource: (jwksUrl: string, options: { cacheMaxAgeMs: number, cooldownMs: number, clockSkewMs: number }) => unknown
}

/**
 * Every route notes serves (`/notes/:id` as its router has it), from its
 * router itself: the build startNotes runs, its app built in this process as
 * its entry builds it (nothing is served, nor the database or the JWKS
 * asked), each route seen as Fastify adds it. Fastify announces every
 * instance it makes on the `fastify.initialization` channel, before any
 * route, and an onRoute hook added then sees them all. notes has no route
 * list to ask for, nor an OpenAPI document as Tessera has.
 */
export async function notesRoutes (env: Record<string, string>): Promise<Array<{ method: string, url: string }>> {
  const modules = await Promise.all(['app.js', 'config.js', 'db.js', 'keys.js'].map(async (file) => await import(pathToFileURL(join(NOTES_DIST, file)).href) as Partial<NotesModules>))
  const { buildApp, loadConfig, connect, createKeySource }: Partial<NotesModules> = Object.assign({}, ...modules)
  if (buildApp === undefined || loadConfig === undefined || connect === undefined || createKeySource === undefined) throw new Error('services/notes/dist lacks the entry\'s steps (make build)')
  const routes: Array<{ method: string, url: string }> = []
  const watch = (message: unknown): void => {
    (message as { fastify: FastifyInstance }).fastify.addHook('onRoute', (route: RouteOptions) => {
      for (const method of [route.method].flat()) routes.push({ method, url: route.url })
    })
  }
  const config = loadConfig(env)
  const db = connect(config.databaseUrl)
  subscribe('fastify.initialization', watch)
  try {
    const app = await buildApp(config, { db, keys: createKeySource(config.jwksUrl, { cacheMaxAgeMs: 1000, cooldownMs: 1000, clockSkewMs: 0 }), logger: pino({ level: 'silent' }) })
    await app.close()
  } finally {
    unsubscribe('fastify.initialization', watch)
    await db.destroy()
  }
  if (routes.length === 0) throw new Error('no route of notes was seen: Fastify no longer announces its instances on fastify.initialization')
  return routes
}

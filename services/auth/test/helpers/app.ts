/**
 * An in-process Tessera on a fresh database: the real buildApp, keyring,
 * hasher and Postgres; logs captured in memory so tests can read them. The
 * clock is frozen and argon2 is at its cheapest unless a test asks otherwise
 * (TestAppOptions); its first signing key is one made ahead for the test run
 * (signing-keys.ts), promoted by the real first start.
 */
import { randomBytes } from 'node:crypto'
import { memorySink } from '@tessera/testkit'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import type { App, Deps } from '../../src/http/app-types.js'
import { loadConfig, type Config } from '../../src/config.js'
import type { Connection } from '../../src/db/connect.js'
import { ensureDefaultClient } from '../../src/clients/register.js'
import { ensureSigningKey } from '../../src/keys/ensure.js'
import { Keyring } from '../../src/keys/keyring.js'
import { loadKeyring } from '../../src/keys/load.js'
import { createLogger } from '../../src/logging.js'
import { createMetrics } from '../../src/metrics/metrics.js'
import { ARGON2_PARAMS, PasswordHasher } from '../../src/passwords/hasher.js'
import { RefreshDecisions } from '../../src/grants/refresh-decisions.js'
import type { Argon2Params } from '../../src/passwords/verify.js'
import { testConnection } from './db.js'
import { storeKeyMadeAhead } from './signing-keys.js'

export interface TestApp {
  app: App
  config: Config
  deps: Deps
  connection: Connection
  kek: Buffer
  /** Every log line written so far, as text. */
  logs: () => string
  /** Moves the injected clock (frozen or real) forward. */
  advance: (seconds: number) => void
}

export interface TestAppOptions {
  connection?: Connection
  hasher?: PasswordHasher
  /**
   * The instant the app's clock stands still at (jose's tests freeze `now`
   * the same way), so expiry and lifetimes are asserted exactly and only
   * `advance` moves time. Defaults to the build time, to the second: the
   * database's own now() and jose's default check are then seconds away.
   */
  now?: Date
  /** A clock that runs, for a test about what happens while time passes. */
  realClock?: boolean
  /** Tessera's own argon2 parameters, for a test about hashing: its cost, its rehash, its queue. */
  productionArgon2?: boolean
}

/**
 * The cheapest argon2id that node-argon2 accepts: a test that only needs a
 * password to work pays about a millisecond per hash instead of tens.
 */
export const TEST_ARGON2: Argon2Params = { memoryCost: 1024, timeCost: 1, parallelism: 1 }

/** For loads of keys Tessera made itself: a rejected row is a bug, so the load fails. */
export function refuseRejectedKey (kid: string, reason: string): void {
  throw new Error(`signing key ${kid} rejected: ${reason}`)
}

/**
 * The real hasher, recording each hash argon2 verify is asked to check: how
 * many verifies a request cost, and at which parameters (the `$argon2id$…$`
 * head of the hash), which is what its time depends on.
 */
export class CountingHasher extends PasswordHasher {
  readonly verified: string[] = []
  get verifies (): number { return this.verified.length }
  override async verify (hash: string, password: string): Promise<boolean> {
    this.verified.push(hash)
    return await super.verify(hash, password)
  }
}

/**
 * The settings of an in-process test. The event-loop-delay ceiling is off
 * unless a test sets it: tests run at nice 15 on a shared machine, where a
 * starved process sees loop delays over the 1 s default and would shed a
 * login that the test expects answered.
 */
export function testConfig (env: Record<string, string> = {}): Config {
  return loadConfig({ TESSERA_KEK: randomBytes(32).toString('base64url'), LOG_LEVEL: 'info', TESSERA_DATA_DIR: '/nonexistent-tessera-test', TESSERA_MAX_EVENT_LOOP_DELAY_MS: '0', ...env })
}

export async function buildTestApp (t: Test, env: Record<string, string> = {}, options: TestAppOptions = {}): Promise<TestApp> {
  const config = testConfig(env)
  const connection = options.connection ?? await testConnection(t)
  const sink = memorySink()
  const logger = createLogger(config, sink.stream)
  const kek = config.kek ?? randomBytes(32)
  let offset = 0
  const frozenAt = (options.now ?? new Date(Math.floor(Date.now() / 1000) * 1000)).getTime()
  const clock = options.realClock === true
    ? (): Date => new Date(Date.now() + offset * 1000)
    : (): Date => new Date(frozenAt + offset * 1000)
  const keyring = new Keyring()
  await storeKeyMadeAhead(connection.db, kek, config.keyBits, clock())
  await ensureSigningKey(connection.db, kek, config.keyBits, clock())
  await loadKeyring(connection.db, kek, keyring, { onRejectedKey: refuseRejectedKey })
  await ensureDefaultClient(connection.db, config, clock())
  const hasher = options.hasher ?? new PasswordHasher({ concurrency: config.hashConcurrency, depth: config.hashQueueDepth, params: options.productionArgon2 === true ? ARGON2_PARAMS : TEST_ARGON2 })
  const refreshDecisions = new RefreshDecisions(connection.db)
  const deps: Deps = { db: connection.db, logger, keyring, hasher, metrics: createMetrics({ hasher, keyring, pool: connection.pool, refreshDecisions, processMetrics: false }), clock, refreshDecisions }
  const app = await buildApp(config, deps)
  t.teardown(async () => { await app.close() })
  return { app, config, deps, connection, kek, logs: sink.text, advance: (seconds) => { offset += seconds } }
}

export interface Tokens {
  access_token: string
  refresh_token: string
  expires_in: number
  refresh_expires_in: number
  scope: string
  token_type: string
}

export async function signUp (app: App, username: string, password: string): Promise<{ id: string, username: string }> {
  const res = await app.inject({ method: 'POST', url: '/v1/users', payload: { username, password } })
  if (res.statusCode !== 201) throw new Error(`sign-up failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

export async function login (app: App, username: string, password: string, headers: Record<string, string> = {}): Promise<Tokens> {
  const res = await app.inject({ method: 'POST', url: '/oauth/token', headers, payload: { grant_type: 'password', username, password } })
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

export async function refresh (app: App, refreshToken: string): Promise<{ status: number, body: Record<string, unknown> }> {
  const res = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'refresh_token', refresh_token: refreshToken } })
  return { status: res.statusCode, body: res.json() }
}

/** Every [METHOD, path] the app serves, HEAD left out, from Fastify's own route tree (a child line extends its parent's path). */
export function servedRoutes (app: App): Array<[string, string]> {
  const routes: Array<[string, string]> = []
  const parents: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?/.exec(line)
    if (match?.[2] === undefined) continue
    const depth = (match[1] ?? '').length / 4
    const full = (parents[depth - 1] ?? '') + match[2]
    parents[depth] = full
    parents.length = depth + 1
    if (match[3] === undefined) continue
    for (const method of match[3].split(', ')) if (method !== 'HEAD') routes.push([method, full])
  }
  return routes
}

/** The hook lines (marked •) printed under a route by printRoutes. */
export function printedHooks (t: Test, app: App): (route: string) => string {
  const lines = app.printRoutes({ includeHooks: true, commonPrefix: false }).split('\n')
  return (route) => {
    const at = lines.findIndex((line) => line.endsWith(` ${route}`))
    t.ok(at >= 0, `${route} is printed`)
    const after = lines.slice(at + 1)
    const end = after.findIndex((line) => !line.includes('•'))
    return after.slice(0, end < 0 ? undefined : end).join('\n')
  }
}

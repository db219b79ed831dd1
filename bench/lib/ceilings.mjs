// @ts-check
/**
 * What this machine allows, measured in the same run as the scenarios: RSA
 * signing (jose, and node:crypto as Tessera signs), argon2id verifies, the
 * refresh decision (through Tessera's code, and through pgbench), and a bare
 * Fastify server (one process, or a cluster laid out as Tessera's).
 * @module
 */
import { spawn } from 'node:child_process'
import { generateKeyPairSync, randomUUID, sign, verify } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import argon2 from 'argon2'
import { SignJWT, generateKeyPair, jwtVerify } from 'jose'
import pg from 'pg'
import { ARGON2_PARAMS, ClientCache, Keyring, REFRESH_GRANTS_SQL, RefreshDecisions, backoffPolicy, connect, hashingOverloaded, loadConfig, loadKeyring, passwordGrant, postgresClientConfig, workerPoolSize } from './service.mjs'

/** @typedef {import('./ceiling-registry.mjs').CpuWindow} CpuWindow */

const BARE_SERVER = fileURLToPath(new URL('../bare-server.mjs', import.meta.url))

/** Claims the size of an access token's. */
const CLAIMS = {
  iss: 'http://tessera.bench',
  sub: randomUUID(),
  aud: 'api',
  exp: 2_000_000_000,
  iat: 1_999_999_700,
  jti: randomUUID(),
  client_id: 'tessera',
  scope: 'read write',
  sid: randomUUID()
}

/**
 * Runs `op`, `inFlight` at once, for `seconds`: per second. `window` (the
 * registry's) is told when the timed span opens and closes.
 * @param {number} seconds @param {number} inFlight @param {() => Promise<unknown>} op @param {CpuWindow} [window]
 */
async function rate (seconds, inFlight, op, window) {
  window?.open()
  const deadline = performance.now() + seconds * 1000
  let done = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (performance.now() < deadline) {
      await op()
      done++
    }
  }))
  window?.close()
  return Math.round(done / ((performance.now() - started) / 1000))
}

/** Runs `op` on this thread, back to back, for `seconds`: per second. @param {number} seconds @param {() => void} op @param {CpuWindow} [window] */
function rateOnThisThread (seconds, op, window) {
  window?.open()
  const deadline = performance.now() + seconds * 1000
  const started = performance.now()
  let done = 0
  while (performance.now() < deadline) {
    op()
    done++
  }
  window?.close()
  return Math.round(done / ((performance.now() - started) / 1000))
}

/**
 * One key pair per size for the whole run: a round then spends its time on
 * signatures, not on making keys (its CPU is read over the timed span alone
 * anyway, ceiling-registry.mjs's window).
 * @type {Map<number, Promise<{ crypto: import('jose').GenerateKeyPairResult, node: import('node:crypto').KeyPairKeyObjectResult }>>}
 */
const KEYS = new Map()

/** @param {number} bits */
async function keysOf (bits) {
  let keys = KEYS.get(bits)
  if (keys === undefined) {
    keys = (async () => ({ crypto: await generateKeyPair('RS256', { modulusLength: bits }), node: generateKeyPairSync('rsa', { modulusLength: bits }) }))()
    KEYS.set(bits, keys)
  }
  return await keys
}

/** jose SignJWT with many signatures in flight: WebCrypto runs them on libuv's pool, over every core. @param {number} bits @param {number} seconds @param {CpuWindow} [window] */
export async function signJoseRate (bits, seconds, window) {
  const { privateKey } = (await keysOf(bits)).crypto
  return await rate(seconds, 64, async () =>
    await new SignJWT(CLAIMS).setProtectedHeader({ alg: 'RS256', kid: 'bench', typ: 'at+jwt' }).sign(privateKey), window)
}

/** node:crypto.sign with a KeyObject on this one thread, which is how Tessera signs (tokens/jws.ts). @param {number} bits @param {number} seconds @param {CpuWindow} [window] */
export async function signNodeRate (bits, seconds, window) {
  const { privateKey } = (await keysOf(bits)).node
  const input = Buffer.from(`${Buffer.from('{"alg":"RS256","kid":"bench","typ":"at+jwt"}').toString('base64url')}.${Buffer.from(JSON.stringify(CLAIMS)).toString('base64url')}`)
  return rateOnThisThread(seconds, () => sign('sha256', input, privateKey), window)
}

/** A refresh token signed with the run's key, and its public key. @param {number} bits */
async function refreshTokenToVerify (bits) {
  const { privateKey, publicKey } = (await keysOf(bits)).node
  const claims = { ...CLAIMS, aud: CLAIMS.iss }
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'bench', typ: 'rt+jwt' }).sign(privateKey)
  return { token, publicKey, claims }
}

/** jose jwtVerify of one refresh token (WebCrypto), 64 in flight. @param {number} bits @param {number} seconds @param {CpuWindow} [window] */
export async function verifyJoseRate (bits, seconds, window) {
  const { token, publicKey, claims } = await refreshTokenToVerify(bits)
  return await rate(seconds, 64, async () =>
    await jwtVerify(token, publicKey, { issuer: claims.iss, audience: claims.iss, typ: 'rt+jwt', algorithms: ['RS256'], currentDate: new Date(1_999_999_800_000) }), window)
}

/**
 * node:crypto.verify of one refresh token's signature on this thread, as
 * tokens/verify-refresh.ts verifies (no claim checks: the floor under any
 * verifier).
 * @param {number} bits @param {number} seconds @param {CpuWindow} [window]
 */
export async function verifyNodeRate (bits, seconds, window) {
  const { token, publicKey } = await refreshTokenToVerify(bits)
  const [header, payload, signature = ''] = token.split('.')
  const input = Buffer.from(`${header}.${payload}`)
  const signatureBytes = Buffer.from(signature, 'base64url')
  return rateOnThisThread(seconds, () => {
    if (!verify('sha256', input, publicKey, signatureBytes)) throw new Error('verify failed')
  }, window)
}

/** argon2id verifies at Tessera's parameters, `concurrency` at once as its hashing queue runs them. @param {number} concurrency @param {number} seconds @param {CpuWindow} [window] */
export async function argon2Rate (concurrency, seconds, window) {
  const hash = await argon2.hash('correct horse battery staple', ARGON2_PARAMS)
  return await rate(seconds, concurrency, async () => {
    if (!await argon2.verify(hash, 'correct horse battery staple')) throw new Error('argon2 verify failed')
  }, window)
}

/**
 * What the password grant does beside the hash, per second: grants/password.ts's
 * passwordGrant as a worker runs it (the client from the worker's memory
 * (clients/cache.ts, its feed live as in a served instance), the attempt
 * counted with the user read, tessera_start_login, two RS256 signatures)
 * through Tessera's own connection, keyring and settings (`env`, as the instance is started),
 * `inFlight` at once on a pool of `pool`, a random one of `usernames` each time.
 * The hasher answers every verify at once, right: the hash is the argon2
 * ceiling's part.
 * @param {{ env: Record<string, string>, kek: Buffer, usernames: string[], inFlight: number, pool: number, seconds: number, window?: CpuWindow }} options
 */
export async function loginGrantRate ({ env, kek, usernames, inFlight, pool, seconds, window }) {
  const config = loadConfig(env)
  const connection = connect(config.databaseUrl ?? '', pool)
  try {
    const keyring = new Keyring()
    await loadKeyring(connection.db, kek, keyring, { onRejectedKey: (kid, reason) => { throw new Error(`signing key ${kid} rejected: ${reason}`) } })
    /** @type {import('../../services/auth/src/passwords/hasher.js').PasswordHashing} */
    const answersAtOnce = {
      saturated: false,
      capacity: inFlight,
      overloaded: hashingOverloaded,
      hash: async () => { throw new Error('the bench users need no rehash') },
      verify: async () => true,
      dummyVerify: async () => false,
      needsRehash: () => false
    }
    const clientCache = new ClientCache()
    clientCache.feed({ live: true, epoch: 1 })
    const deps = { db: connection.db, keyring, config, clientCache, hasher: answersAtOnce, backoff: backoffPolicy(config) }
    return await rate(seconds, inFlight, async () => {
      await passwordGrant(deps, {
        username: usernames[Math.floor(Math.random() * usernames.length)] ?? '',
        password: 'unused: the hasher answers at once',
        scope: undefined,
        credentials: { method: 'none', clientId: undefined },
        resource: undefined,
        now: new Date(),
        context: { ip: '127.0.0.1', userAgent: 'autocannon' }
      })
    }, window)
  } finally {
    await connection.close()
  }
}

/**
 * Sessions with one unused refresh token each, the starting links of the
 * rotation chains, of a public client `clientId` registered for them, which
 * presents them as Tessera's default client does; it marks them so pgbench
 * can find its own.
 * @param {pg.Pool} pool @param {number} count @param {string} clientId
 */
async function rotationChains (pool, count, clientId) {
  const { rows: [key] } = await pool.query("SELECT kid FROM signing_keys WHERE state = 'current'")
  const { rows: [user] } = await pool.query('SELECT id FROM users LIMIT 1')
  await pool.query("INSERT INTO clients (client_id, confidential, grants, scopes, resources) VALUES ($1, false, '{refresh_token}', '{read,write}', '{}')", [clientId])
  const now = new Date()
  const later = new Date(now.getTime() + 30 * 86400_000)
  /** @type {{ session: string, jti: string, userId: string }[]} */
  const chains = []
  for (let i = 0; i < count; i++) {
    const session = randomUUID()
    const jti = randomUUID()
    await pool.query("INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at, expires_at, absolute_expires_at) VALUES ($1, $2, $3, 'read write', $4, $4, $5, $5)", [session, user.id, clientId, now, later])
    await pool.query('INSERT INTO refresh_tokens (jti, session_id, kid, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)', [jti, session, key.kid, now, later])
    chains.push({ session, jti, userId: user.id })
  }
  return { kid: key.kid, chains }
}

/**
 * Refresh decisions per second as Tessera makes them: one
 * grants/refresh-decisions.ts RefreshDecisions per HTTP worker, each on a
 * pool of its own the size of a worker's, `chains` chains at once spread
 * over them as the scenario's connections are, each rotating the successor
 * it got last. A worker's decisions that arrive while its two calls are in
 * flight go together in one call of tessera_refresh_grants, as in Tessera.
 * @param {string} url @param {{ workers: number, pool: number, chains: number }} layout @param {number} seconds @param {CpuWindow} [window]
 */
export async function rotationRate (url, { workers, pool: poolSize, chains: count }, seconds, window) {
  const pool = new pg.Pool({ ...postgresClientConfig(url), max: 1 })
  const clientId = `bench-rotation-${randomUUID()}`
  const { kid, chains } = await rotationChains(pool, count, clientId).finally(async () => { await pool.end() })
  const connections = Array.from({ length: workers }, () => connect(url, poolSize))
  try {
    // Connections are made (SCRAM costs milliseconds each) before the clock starts.
    for (const connection of connections) {
      const clients = await Promise.all(Array.from({ length: poolSize }, async () => await connection.pool.connect()))
      for (const client of clients) client.release()
    }
    const deciders = connections.map((connection) => new RefreshDecisions(connection.db))
    window?.open()
    const deadline = performance.now() + seconds * 1000
    const started = performance.now()
    let done = 0
    await Promise.all(chains.map(async (chain, i) => {
      const decider = deciders[i % deciders.length]
      if (decider === undefined) throw new Error('no worker to decide on')
      while (performance.now() < deadline) {
        const row = await decider.decide({
          presentingClient: clientId,
          claims: { jti: chain.jti, sid: chain.session, sub: chain.userId },
          wantedScope: undefined,
          now: new Date(),
          graceSeconds: 10,
          ttlSeconds: 30 * 86400,
          successorJti: randomUUID(),
          successorKid: kid,
          context: { ip: '127.0.0.1', userAgent: 'autocannon' }
        })
        if (row.decision !== 'rotated' || row.successor_jti === null) throw new Error(`rotation refused: ${row.decision}`)
        chain.jti = row.successor_jti
        done++
      }
    }))
    window?.close()
    return Math.round(done / ((performance.now() - started) / 1000))
  } finally {
    await Promise.all(connections.map(async (connection) => await connection.close()))
  }
}

/**
 * Tessera's call of `together` decisions with pgbench's variables for the
 * parameters, as rotationRate passes them: the chains' tokens, sessions and
 * users as array texts (pgbench's variables hold text), the rest one value
 * repeated; only the successors come back, in order, for pgbench's gset.
 * @param {string} clientId @param {number} together
 */
function pgbenchGrants (clientId, together) {
  const each = (/** @type {string} */ value, /** @type {string} */ type) => `array_fill(${value}::${type}, ARRAY[${together}])`
  const args = [':jtis::uuid[]', ':sids::uuid[]', ':subs::text[]', each('clock_timestamp()', 'timestamptz'), '10', each('NULL', 'text'),
    `ARRAY(SELECT gen_random_uuid() FROM generate_series(1, ${together}))`, each(':kid', 'text'), '2592000', each("'127.0.0.1'", 'text'),
    each("'pgbench'", 'text'), each(`'${clientId}'`, 'text'), each('NULL', 'bytea'), each('NULL', 'text')]
  const call = REFRESH_GRANTS_SQL.replace(/\$(\d+)/g, (_, n) => args[Number(n) - 1] ?? 'NULL').replace('select *', 'select array_agg(successor_jti ORDER BY item)::text AS jtis, 1 / bool_and(decision = \'rotated\')::int AS rotated')
  // A decision not rotated divides by zero: pgbench stops and the ceiling fails, rather than counting cheap refusals.
  return call
}

/**
 * The same decisions from Postgres's own point of view: pgbench calls
 * grants/refresh-decisions.ts's REFRESH_GRANTS_SQL (tessera_refresh_grants)
 * over `clients` connections, as many as Tessera's instance keeps calls in
 * flight, each rotating `together` chains of its own per call (the
 * successors come back by \gset), and reports calls per second, times
 * `together` for decisions. No Node, no pool, no driver: what is left is the
 * database. Undefined when pgbench is not installed (Debian's
 * postgresql-client has it).
 * @param {string} url @param {{ clients: number, together: number }} layout @param {number} seconds
 * @returns {Promise<number | undefined>}
 */
export async function pgbenchRotationRate (url, { clients, together }, seconds) {
  const tag = `bench-pgbench-${randomUUID()}`
  const pool = new pg.Pool({ ...postgresClientConfig(url), max: 1 })
  try {
    await rotationChains(pool, clients * together, tag)
  } finally {
    await pool.end()
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-pgbench-'))
  try {
    const script = path.join(dir, 'rotate.sql')
    await fs.writeFile(script, [
      '\\if :started = 0',
      'SELECT array_agg(c.sid ORDER BY c.sid)::text AS sids, array_agg(c.sub ORDER BY c.sid)::text AS subs, array_agg(c.jti ORDER BY c.sid)::text AS jtis, min(c.kid) AS kid FROM (' +
        `SELECT s.id AS sid, s.user_id AS sub, rt.jti, rt.kid FROM sessions s JOIN refresh_tokens rt ON rt.session_id = s.id WHERE s.client_id = '${tag}' AND rt.used_at IS NULL ORDER BY s.id OFFSET :client_id * ${together} LIMIT ${together}) c \\gset`,
      '\\set started 1',
      '\\endif',
      `${pgbenchGrants(tag, together)} \\gset`,
      ''
    ].join('\n'))
    const output = await new Promise((resolve, reject) => {
      const child = spawn('pgbench', ['--no-vacuum', '--protocol=prepared', `--client=${clients}`, `--jobs=${Math.min(clients, os.cpus().length)}`, `--time=${Math.max(1, Math.round(seconds))}`,
        '--define=started=0', `--file=${script}`, url], { stdio: ['ignore', 'pipe', 'pipe'] })
      let text = ''
      child.stdout.on('data', (chunk) => { text += chunk.toString() })
      child.stderr.on('data', (chunk) => { text += chunk.toString() })
      child.on('error', reject)
      child.on('close', (code) => { code === 0 ? resolve(text) : reject(new Error(`pgbench exited ${code}: ${text}`)) })
    }).catch((/** @type {NodeJS.ErrnoException} */ err) => { if (err.code === 'ENOENT') return undefined; throw err })
    if (output === undefined) return undefined
    const failed = /number of failed transactions: (\d+)/.exec(String(output))
    if (failed !== null && failed[1] !== '0') throw new Error(`pgbench: ${failed[1]} transactions failed`)
    const tps = /tps = ([\d.]+)/.exec(String(output))
    if (tps === null) throw new Error(`pgbench printed no tps: ${output}`)
    return Math.round(Number(tps[1]) * together)
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
}

/**
 * @typedef {object} BareServer
 * @property {string} url
 * @property {number} pid the process started (the cluster's primary, when there are workers)
 * @property {Promise<number | null>} exited its exit code, once every process is gone (stopped, or stopped itself)
 * @property {() => Promise<number | null>} stop SIGTERM, then `exited`
 */

/**
 * The bare server (bench/bare-server.mjs): one process, or with `workers` > 1
 * a node:cluster of that many sharing one port, each with `pool` database
 * connections (default: the instance's 20, split as Tessera splits them).
 * @param {{ databaseUrl: string, jwks: string, etag: string, jwksHeaders?: Record<string, string>, requestIdLength?: number, tokenResponse: string, workers?: number, pool?: number }} options
 * @returns {Promise<BareServer>}
 */
export async function startBareServer ({ databaseUrl, jwks, etag, jwksHeaders = {}, requestIdLength = 0, tokenResponse, workers = 1, pool = workerPoolSize(workers) }) {
  const child = spawn(process.execPath, [BARE_SERVER], {
    env: {
      PATH: process.env.PATH ?? '',
      BARE_WORKERS: String(workers),
      BARE_POOL: String(pool),
      BARE_DATABASE_URL: databaseUrl,
      BARE_JWKS: jwks,
      BARE_ETAG: etag,
      BARE_JWKS_HEADERS: JSON.stringify(jwksHeaders),
      BARE_REQUEST_ID_LENGTH: String(requestIdLength),
      BARE_TOKEN_RESPONSE: tokenResponse
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  /** @type {Promise<number | null>} */
  const exited = new Promise((resolve) => child.on('exit', resolve))
  const port = await new Promise((resolve, reject) => {
    let output = ''
    child.stdout.on('data', (chunk) => {
      output += chunk.toString()
      const line = output.split('\n').find((l) => l.startsWith('{'))
      if (line !== undefined) resolve(JSON.parse(line).port)
    })
    void exited.then((code) => reject(new Error(`the bare server exited (${code})`)))
  })
  return {
    url: `http://127.0.0.1:${port}`,
    pid: /** @type {number} */ (child.pid),
    exited,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM')
      return await exited
    }
  }
}

/**
 * The refresh path as three resources used one after another: two signatures,
 * one rotation transaction, one HTTP request. Served serially by one machine
 * they add up in time, so the combined rate is the harmonic combination
 * 1 / (1/(signs/2) + 1/transactions + 1/requests).
 * @param {{ signs: number, transactions: number, requests: number }} parts
 */
export function combinedRefreshCeiling ({ signs, transactions, requests }) {
  return Math.round(1 / (2 / signs + 1 / transactions + 1 / requests))
}

/**
 * Logins per second when each costs one verify, one grant and one request,
 * done one after another on the same machine.
 * @param {{ hashes: number, grants: number, requests: number }} rates
 */
export function combinedLoginCeiling ({ hashes, grants, requests }) {
  return Math.round(1 / (1 / hashes + 1 / grants + 1 / requests))
}

/**
 * What this machine allows, measured in the same run as the scenarios: RSA
 * signing (jose, and node:crypto as Tessera signs), argon2id verifies, the
 * rotation transaction's Postgres round trips, and a bare Fastify process.
 * @module
 */
import { spawn } from 'node:child_process'
import { generateKeyPairSync, randomUUID, sign, verify } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import argon2 from 'argon2'
import { SignJWT, generateKeyPair, jwtVerify } from 'jose'
import pg from 'pg'
import { ARGON2_PARAMS } from '../../services/auth/dist/passwords/hasher.js'

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

/** @param {number} seconds @param {number} inFlight @param {() => Promise<unknown>} op */
async function rate (seconds, inFlight, op) {
  const deadline = performance.now() + seconds * 1000
  let done = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (performance.now() < deadline) {
      await op()
      done++
    }
  }))
  return Math.round(done / ((performance.now() - started) / 1000))
}

/**
 * jose SignJWT with many signatures in flight (WebCrypto runs them on libuv's
 * pool, over every core), and node:crypto.sign with a KeyObject on this one
 * thread, which is how Tessera signs (tokens/jws.ts).
 * @param {number} bits @param {number} seconds
 */
export async function signingRates (bits, seconds) {
  const { privateKey: cryptoKey } = await generateKeyPair('RS256', { modulusLength: bits })
  const jose = await rate(seconds, 64, async () =>
    await new SignJWT(CLAIMS).setProtectedHeader({ alg: 'RS256', kid: 'bench', typ: 'at+jwt' }).sign(cryptoKey))
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  const input = Buffer.from(`${Buffer.from('{"alg":"RS256","kid":"bench","typ":"at+jwt"}').toString('base64url')}.${Buffer.from(JSON.stringify(CLAIMS)).toString('base64url')}`)
  const deadline = performance.now() + seconds * 1000
  const started = performance.now()
  let done = 0
  while (performance.now() < deadline) {
    sign('sha256', input, privateKey)
    done++
  }
  const nodeCrypto = Math.round(done / ((performance.now() - started) / 1000))
  return { jose, nodeCrypto }
}

/**
 * Verifying one refresh token: jose jwtVerify (WebCrypto, as verify-refresh.ts
 * does), 64 in flight, and node:crypto.verify of the same signature on this
 * thread (no claim checks: the floor under any verifier).
 * @param {number} bits @param {number} seconds
 */
export async function verifyRates (bits, seconds) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  const claims = { ...CLAIMS, aud: CLAIMS.iss }
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'bench', typ: 'rt+jwt' }).sign(privateKey)
  const jose = await rate(seconds, 64, async () =>
    await jwtVerify(token, publicKey, { issuer: claims.iss, audience: claims.iss, typ: 'rt+jwt', algorithms: ['RS256'], currentDate: new Date(1_999_999_800_000) }))
  const [header, payload, signature] = token.split('.')
  const input = Buffer.from(`${header}.${payload}`)
  const deadline = performance.now() + seconds * 1000
  const started = performance.now()
  let done = 0
  while (performance.now() < deadline) {
    if (!verify('sha256', input, publicKey, Buffer.from(signature, 'base64url'))) throw new Error('verify failed')
    done++
  }
  return { jose, nodeCrypto: Math.round(done / ((performance.now() - started) / 1000)) }
}

/** argon2id verifies at Tessera's parameters, `concurrency` at once as its hashing queue runs them. @param {number} concurrency @param {number} seconds */
export async function argon2Rate (concurrency, seconds) {
  const hash = await argon2.hash('correct horse battery staple', ARGON2_PARAMS)
  return await rate(seconds, concurrency, async () => {
    if (!await argon2.verify(hash, 'correct horse battery staple')) throw new Error('argon2 verify failed')
  })
}

/**
 * Transactions per second of sessions/rotate.ts's statements for an unused
 * token (lock the session, read the token, then mark it used, insert the
 * successor and slide the session in one statement), `concurrency` chains at
 * once, each rotating the token it inserted last, on a pool the size of
 * Tessera's. With `separateWrites` the three writes go as three statements,
 * as rotate.ts did before (two round trips more).
 * @param {string} url @param {number} concurrency @param {number} seconds @param {{ separateWrites?: boolean }} [options]
 */
export async function rotationRate (url, concurrency, seconds, { separateWrites = false } = {}) {
  const pool = new pg.Pool({ connectionString: url, max: concurrency })
  try {
    const { rows: [key] } = await pool.query("SELECT kid FROM signing_keys WHERE state = 'current'")
    const { rows: [user] } = await pool.query('SELECT id FROM users LIMIT 1')
    const now = new Date()
    const later = new Date(now.getTime() + 30 * 86400_000)
    const chains = []
    for (let i = 0; i < concurrency; i++) {
      const session = randomUUID()
      const jti = randomUUID()
      await pool.query("INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at, expires_at, absolute_expires_at) VALUES ($1, $2, 'tessera', 'read write', $3, $3, $4, $4)", [session, user.id, now, later])
      await pool.query('INSERT INTO refresh_tokens (jti, session_id, kid, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)', [jti, session, key.kid, now, later])
      chains.push({ session, jti })
    }
    // Connections are made (SCRAM costs milliseconds each) before the clock starts.
    const clients = await Promise.all(chains.map(async () => await pool.connect()))
    const deadline = performance.now() + seconds * 1000
    const started = performance.now()
    let done = 0
    await Promise.all(chains.map(async (chain, i) => {
      const client = clients[i]
      try {
        while (performance.now() < deadline) {
          const at = new Date()
          const successor = randomUUID()
          await client.query('begin')
          await client.query('select "sessions"."id", "sessions"."user_id", "sessions"."client_id", "sessions"."scope", "sessions"."expires_at", "sessions"."absolute_expires_at", "sessions"."revoked_at", "users"."disabled_at" from "sessions" inner join "users" on "users"."id" = "sessions"."user_id" where "sessions"."id" = $1 for update of "sessions"', [chain.session])
          await client.query('select "refresh_tokens"."jti", "refresh_tokens"."used_at", "refresh_tokens"."successor_jti", "refresh_tokens"."session_id", "signing_keys"."state" from "refresh_tokens" inner join "signing_keys" on "signing_keys"."kid" = "refresh_tokens"."kid" where "refresh_tokens"."jti" = $1', [chain.jti])
          if (!separateWrites) {
            // Kysely's text for rotate.ts's write, byte for byte.
            await client.query('with "used" as (update "refresh_tokens" set "used_at" = $1, "successor_jti" = $2 where "jti" = $3 returning "jti"), "slid" as (update "sessions" set "last_used_at" = $4, "expires_at" = $5, "ip" = $6, "user_agent" = $7 where "id" = $8 returning "id") insert into "refresh_tokens" ("jti", "session_id", "parent_jti", "kid", "issued_at", "expires_at") values ($9, $10, $11, $12, $13, $14)',
              [at, successor, chain.jti, at, later, '127.0.0.1', 'autocannon', chain.session, successor, chain.session, chain.jti, key.kid, at, later])
          } else {
            await client.query('update "refresh_tokens" set "used_at" = $1, "successor_jti" = $2 where "jti" = $3', [at, successor, chain.jti])
            await client.query('insert into "refresh_tokens" ("jti", "session_id", "parent_jti", "kid", "issued_at", "expires_at") values ($1, $2, $3, $4, $5, $6)', [successor, chain.session, chain.jti, key.kid, at, later])
            await client.query('update "sessions" set "last_used_at" = $1, "expires_at" = $2, "ip" = $3, "user_agent" = $4 where "id" = $5', [at, later, '127.0.0.1', 'autocannon', chain.session])
          }
          await client.query('commit')
          chain.jti = successor
          done++
        }
      } finally {
        client.release()
      }
    }))
    return Math.round(done / ((performance.now() - started) / 1000))
  } finally {
    await pool.end()
  }
}

/**
 * @typedef {object} BareServer
 * @property {string} url
 * @property {() => Promise<void>} stop
 */

/** @param {{ databaseUrl: string, jwks: string, etag: string, tokenResponse: string }} options @returns {Promise<BareServer>} */
export async function startBareServer ({ databaseUrl, jwks, etag, tokenResponse }) {
  const child = spawn(process.execPath, [BARE_SERVER], {
    env: { PATH: process.env.PATH ?? '', BARE_DATABASE_URL: databaseUrl, BARE_JWKS: jwks, BARE_ETAG: etag, BARE_TOKEN_RESPONSE: tokenResponse },
    stdio: ['ignore', 'pipe', 'inherit']
  })
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
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM')
      await exited
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

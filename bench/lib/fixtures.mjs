// @ts-check
/**
 * What the scenarios present: users, live sessions, unused refresh tokens and
 * valid access tokens. Rows go straight into Postgres in bulk and tokens are
 * signed with Tessera's own minting code and keyring (the same KEK as the
 * server), so the server sees exactly what its own login would have issued,
 * without paying one argon2 verify per token up front.
 * @module
 */
import { randomUUID } from 'node:crypto'
import argon2 from 'argon2'
import { ARGON2_PARAMS, Keyring, connect, loadKeyring, mintAccessToken, mintRefreshToken } from './service.mjs'

export const PASSWORD = 'correct horse battery staple'
const CHUNK = 5000

/** @typedef {Parameters<typeof mintAccessToken>[0]} TokenConfig what the server issues: issuer, audience, access TTL (seconds), SimpleJWT compatibility */

/**
 * @typedef {object} Fixtures
 * @property {{ id: string, username: string }[]} users
 * @property {(count: number) => Promise<string[]>} refreshTokens that many unused refresh tokens, one session each
 * @property {(count: number) => Promise<{ token: string, userId: string, sessionId: string }[]>} accessTokens live sessions with an access token each
 * @property {(text: string) => Promise<void>} sql runs one statement on the benchmark database
 * @property {() => Promise<void>} close
 */

/**
 * Creates `count` users sharing one argon2id hash of PASSWORD at Tessera's
 * parameters (each login still pays a full verify) and loads the signing keys.
 * @param {{ url: string, kek: Buffer, tokens: TokenConfig, users: number }} options
 * @returns {Promise<Fixtures>}
 */
export async function prepareFixtures ({ url, kek, tokens, users: count }) {
  const connection = connect(url, 4)
  const { pool, db } = connection
  const hash = await argon2.hash(PASSWORD, ARGON2_PARAMS)
  const users = (await pool.query(
    "INSERT INTO users (username, password_hash) SELECT 'bench-user-' || lpad(i::text, 5, '0'), $1 FROM generate_series(1, $2) AS i RETURNING id, username",
    [hash, count])).rows
  const keyring = new Keyring()
  await loadKeyring(db, kek, keyring, { onRejectedKey: (kid, reason) => { throw new Error(`signing key ${kid} rejected: ${reason}`) } })
  const kid = keyring.signer?.kid
  if (kid === undefined) throw new Error('no signing key: start Tessera before preparing fixtures')

  /** @param {number} n */
  const sessions = async (n) => {
    const now = new Date(Math.floor(Date.now() / 1000) * 1000)
    const expires = new Date(now.getTime() + 30 * 86400_000)
    const absolute = new Date(now.getTime() + 90 * 86400_000)
    const made = []
    for (let start = 0; start < n; start += CHUNK) {
      const size = Math.min(CHUNK, n - start)
      const rows = Array.from({ length: size }, (_, i) => ({
        sessionId: randomUUID(), jti: randomUUID(), userId: users[(start + i) % users.length].id
      }))
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        await client.query(
          `INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at, expires_at, absolute_expires_at)
           SELECT s, u, 'tessera', 'read write', $3, $3, $4, $5 FROM unnest($1::uuid[], $2::uuid[]) AS t(s, u)`,
          [rows.map((r) => r.sessionId), rows.map((r) => r.userId), now, expires, absolute])
        await client.query(
          `INSERT INTO refresh_tokens (jti, session_id, kid, issued_at, expires_at)
           SELECT j, s, $3, $4, $5 FROM unnest($1::uuid[], $2::uuid[]) AS t(j, s)`,
          [rows.map((r) => r.jti), rows.map((r) => r.sessionId), kid, now, expires])
        await client.query('COMMIT')
      } catch (err) {
        await client.query('ROLLBACK')
        throw err
      } finally {
        client.release()
      }
      for (const r of rows) made.push({ ...r, kid, issuedAt: now, expiresAt: expires })
    }
    return made
  }

  return {
    users,
    refreshTokens: async (n) => (await sessions(n)).map((record) => mintRefreshToken(tokens, keyring, record)),
    accessTokens: async (n) => (await sessions(n)).map((record) => ({
      // notes:read too, so the notes scenario's reads pass notes' scope check.
      token: mintAccessToken(tokens, keyring, { subject: record.userId, sessionId: record.sessionId, clientId: 'tessera', scope: 'read write notes:read', audience: undefined, now: new Date() }).token,
      userId: record.userId,
      sessionId: record.sessionId
    })),
    sql: async (text) => { await pool.query(text) },
    close: async () => { await connection.close() }
  }
}

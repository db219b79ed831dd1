/**
 * Starting a session and issuing a token pair: shared by the password grant
 * and the refresh grant so both answer the same shape.
 * @module
 */
import { randomUUID } from 'node:crypto'
import type { ClientCache } from '../clients/cache.js'
import type { Config } from '../config.js'
import type { Db } from '../db/database.js'
import type { Keyring } from '../keys/keyring.js'
import { epochSeconds, mintAccessToken, mintRefreshToken, type RefreshTokenRecord } from '../tokens/mint.js'
import { OAuthError } from '../errors.js'

export type IssuerConfig = Pick<Config, 'issuer' | 'audience' | 'accessTtl' | 'refreshTtl' | 'sessionMax' | 'refreshGrace' | 'defaultClientId' | 'simplejwtCompat'>

export interface Issuer {
  db: Db
  keyring: Keyring
  config: IssuerConfig
  /** An HTTP worker's client rows in memory; absent, every client read goes to the database. */
  clientCache?: ClientCache
}

export interface TokenPair {
  accessToken: string
  /** Absent for a login by a client not registered for the refresh_token grant, which could never use one. */
  refreshToken: string | undefined
  expiresIn: number
  refreshExpiresIn: number | undefined
  scope: string
  sessionId: string
  userId: string
}

/** Whole seconds: JWT times are seconds, and a stored time must mint the same claim again. */
const floorToSecond = (date: Date): Date => new Date(epochSeconds(date) * 1000)

const addSeconds = (date: Date, seconds: number): Date => new Date(date.getTime() + seconds * 1000)

export function currentKid (keyring: Keyring): string {
  const signer = keyring.signer
  if (signer === undefined) throw new OAuthError('temporarily_unavailable', 'no signing key is loaded; retry later', { retryAfter: 1 })
  return signer.kid
}

/** A new session and its first refresh token, for the caller to store (grants/password.ts, in one call). */
export interface NewSession extends RefreshTokenRecord {
  absoluteExpiresAt: Date
}

/**
 * The ids and times of a session starting at `now`: whole seconds, its first
 * token's life capped by the session's. A session that will never be
 * refreshed (`refreshable` false) lives as long as its one access token.
 */
export function newSession (issuer: Pick<Issuer, 'keyring' | 'config'>, userId: string, now: Date, refreshable = true): NewSession {
  const issuedAt = floorToSecond(now)
  const absoluteExpiresAt = addSeconds(issuedAt, issuer.config.sessionMax)
  const life = refreshable ? issuer.config.refreshTtl : issuer.config.accessTtl
  const expiresAt = new Date(Math.min(addSeconds(issuedAt, life).getTime(), absoluteExpiresAt.getTime()))
  return { jti: randomUUID(), sessionId: randomUUID(), userId, kid: currentKid(issuer.keyring), issuedAt, expiresAt, absoluteExpiresAt }
}

/**
 * Mints the pair for a stored refresh record: the refresh token is
 * reproducible, the access token fresh. Without `refreshable` (a client not
 * registered for the refresh_token grant), the access token alone.
 */
export function tokenPair (issuer: Issuer, record: RefreshTokenRecord, grant: { clientId: string, scope: string, audience: string | undefined, now: Date, username: string | undefined, refreshable?: boolean }): TokenPair {
  const access = mintAccessToken(issuer.config, issuer.keyring, { subject: record.userId, sessionId: record.sessionId, clientId: grant.clientId, scope: grant.scope, audience: grant.audience, now: grant.now, username: grant.username, notAfter: record.expiresAt })
  const refreshable = grant.refreshable ?? true
  return {
    accessToken: access.token,
    refreshToken: refreshable ? mintRefreshToken(issuer.config, issuer.keyring, record) : undefined,
    expiresIn: access.expiresIn,
    refreshExpiresIn: refreshable ? Math.max(0, epochSeconds(record.expiresAt) - epochSeconds(grant.now)) : undefined,
    scope: grant.scope,
    sessionId: record.sessionId,
    userId: record.userId
  }
}

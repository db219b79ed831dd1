/**
 * Starting a session and issuing a token pair: shared by the password grant
 * and the refresh grant so both answer the same shape.
 * @module
 */
import { randomUUID } from 'node:crypto'
import type { Config } from '../config.js'
import type { Insertable } from 'kysely'
import type { Db, RefreshTokensTable } from '../db/database.js'
import type { RequestContext } from '../audit/record.js'
import type { Keyring } from '../keys/keyring.js'
import { epochSeconds, mintAccessToken, mintRefreshToken, type RefreshTokenRecord } from '../tokens/mint.js'
import { OAuthError } from '../errors.js'

export type IssuerConfig = Pick<Config, 'issuer' | 'audience' | 'accessTtl' | 'refreshTtl' | 'sessionMax' | 'refreshGrace' | 'defaultClientId' | 'simplejwtCompat'>

export interface Issuer {
  db: Db
  keyring: Keyring
  config: IssuerConfig
}

export interface TokenPair {
  accessToken: string
  refreshToken: string
  expiresIn: number
  refreshExpiresIn: number
  scope: string
  sessionId: string
  userId: string
  /** The kid that signed the access token. */
  kid: string
}

/** Whole seconds: JWT times are seconds, and a stored time must mint the same claim again. */
export const floorToSecond = (date: Date): Date => new Date(epochSeconds(date) * 1000)

const addSeconds = (date: Date, seconds: number): Date => new Date(date.getTime() + seconds * 1000)

export function currentKid (keyring: Keyring): string {
  const signer = keyring.signer
  if (signer === undefined) throw new OAuthError('temporarily_unavailable', 'no signing key is loaded; retry later', { retryAfter: 1 })
  return signer.kid
}

/** Inserts a session and its first refresh token; run inside the caller's transaction. */
export async function startSession (db: Db, issuer: Issuer, input: { userId: string, clientId: string, scope: string, resources: string[], now: Date, context: RequestContext }): Promise<RefreshTokenRecord & { scope: string, clientId: string }> {
  const now = floorToSecond(input.now)
  const absolute = addSeconds(now, issuer.config.sessionMax)
  const expires = new Date(Math.min(addSeconds(now, issuer.config.refreshTtl).getTime(), absolute.getTime()))
  const sessionId = randomUUID()
  await db.insertInto('sessions').values({
    id: sessionId,
    user_id: input.userId,
    client_id: input.clientId,
    scope: input.scope,
    resources: input.resources,
    created_at: now,
    last_used_at: now,
    expires_at: expires,
    absolute_expires_at: absolute,
    user_agent: input.context.userAgent?.slice(0, 512) ?? null,
    ip: input.context.ip ?? null
  }).execute()
  const record = { jti: randomUUID(), sessionId, userId: input.userId, kid: currentKid(issuer.keyring), issuedAt: now, expiresAt: expires }
  await insertRefreshToken(db, record, null)
  return { ...record, scope: input.scope, clientId: input.clientId }
}

/** The refresh_tokens row of a record, for an INSERT. */
export function refreshTokenRow (record: RefreshTokenRecord, parentJti: string | null): Insertable<RefreshTokensTable> {
  return {
    jti: record.jti,
    session_id: record.sessionId,
    parent_jti: parentJti,
    kid: record.kid,
    issued_at: record.issuedAt,
    expires_at: record.expiresAt
  }
}

export async function insertRefreshToken (db: Db, record: RefreshTokenRecord, parentJti: string | null): Promise<void> {
  await db.insertInto('refresh_tokens').values(refreshTokenRow(record, parentJti)).execute()
}

/** Mints the pair for a stored refresh record: the refresh token is reproducible, the access token fresh. */
export function tokenPair (issuer: Issuer, record: RefreshTokenRecord, grant: { clientId: string, scope: string, audience: string | undefined, now: Date, username: string | undefined }): TokenPair {
  const access = mintAccessToken(issuer.config, issuer.keyring, { subject: record.userId, sessionId: record.sessionId, clientId: grant.clientId, scope: grant.scope, audience: grant.audience, now: grant.now, username: grant.username })
  return {
    accessToken: access.token,
    refreshToken: mintRefreshToken(issuer.config, issuer.keyring, record),
    expiresIn: access.expiresIn,
    refreshExpiresIn: Math.max(0, epochSeconds(record.expiresAt) - epochSeconds(grant.now)),
    scope: grant.scope,
    sessionId: record.sessionId,
    userId: record.userId,
    kid: access.kid
  }
}

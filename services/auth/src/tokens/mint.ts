/**
 * Access tokens (RFC 9068) and refresh tokens. Claims are built in a fixed
 * order from stored values, so minting the same refresh token twice gives the
 * same string.
 * @module
 */
import { randomUUID } from 'node:crypto'
import type { Config } from '../config.js'
import { OAuthError } from '../errors.js'
import type { Keyring } from '../keys/keyring.js'
import { signCompactJws } from './jws.js'

export interface AccessTokenGrant {
  /** A user id, or for client_credentials the client_id (RFC 9068 §2.2). */
  subject: string
  /** Absent for client_credentials: such a token has no session. */
  sessionId: string | undefined
  clientId: string
  scope: string
  /** The resource asked for (RFC 8707); undefined means TESSERA_AUDIENCE. */
  audience: string | undefined
  now: Date
  /** Carried as `preferred_username` when SimpleJWT compatibility is on. */
  username?: string | undefined
  /** The end of the token's session: the token expires then at the latest, never after its session is over. */
  notAfter?: Date
}

export interface MintedAccessToken {
  token: string
  expiresIn: number
}

export const epochSeconds = (date: Date): number => Math.floor(date.getTime() / 1000)

function noSigningKey (): OAuthError {
  return new OAuthError('temporarily_unavailable', 'no signing key is loaded; retry later', { retryAfter: 1, detail: 'keyring has no current key' })
}

export function mintAccessToken (config: Pick<Config, 'issuer' | 'audience' | 'accessTtl' | 'simplejwtCompat'>, keyring: Keyring, grant: AccessTokenGrant): MintedAccessToken {
  const signer = keyring.signer
  if (signer === undefined) throw noSigningKey()
  const iat = epochSeconds(grant.now)
  // At least a second: a grace replay's successor may end sooner than that under a refresh TTL barely above the grace.
  const exp = Math.max(iat + 1, Math.min(iat + config.accessTtl, grant.notAfter === undefined ? Infinity : epochSeconds(grant.notAfter)))
  const claims = {
    iss: config.issuer,
    sub: grant.subject,
    aud: grant.audience ?? (config.audience.length === 1 ? config.audience[0] : config.audience),
    exp,
    iat,
    jti: randomUUID(),
    client_id: grant.clientId,
    scope: grant.scope,
    ...(grant.sessionId === undefined ? {} : { sid: grant.sessionId }),
    // What SimpleJWT's JWTAuthentication reads, so DRF services accept the token by settings alone.
    ...(config.simplejwtCompat && grant.username !== undefined ? { preferred_username: grant.username, token_type: 'access' } : {})
  }
  return {
    token: signCompactJws({ alg: 'RS256', kid: signer.kid, typ: 'at+jwt' }, claims, signer.privateKey),
    expiresIn: exp - iat
  }
}

/** What a stored refresh_tokens row holds: enough to mint the token again, never the token. */
export interface RefreshTokenRecord {
  jti: string
  sessionId: string
  userId: string
  kid: string
  issuedAt: Date
  expiresAt: Date
}

export function mintRefreshToken (config: Pick<Config, 'issuer'>, keyring: Keyring, record: RefreshTokenRecord): string {
  const privateKey = keyring.privateKey(record.kid)
  if (privateKey === undefined) throw noSigningKey()
  const claims = {
    iss: config.issuer,
    sub: record.userId,
    aud: config.issuer,
    exp: epochSeconds(record.expiresAt),
    iat: epochSeconds(record.issuedAt),
    jti: record.jti,
    sid: record.sessionId
  }
  return signCompactJws({ alg: 'RS256', kid: record.kid, typ: 'rt+jwt' }, claims, privateKey)
}

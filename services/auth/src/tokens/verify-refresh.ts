/**
 * Verifies a presented refresh token with jose: our signature (any key that
 * may still have signed a live refresh token), `typ` rt+jwt, our issuer as
 * both `iss` and `aud`, not expired.
 * @module
 */
import { errors, jwtVerify, type JWTPayload } from 'jose'
import type { Config } from '../config.js'
import { OAuthError } from '../errors.js'
import type { Keyring } from '../keys/keyring.js'

export interface RefreshClaims {
  jti: string
  sid: string
  sub: string
  kid: string
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function claimsOf (payload: JWTPayload, kid: string): RefreshClaims | undefined {
  const { jti, sid, sub } = payload as { jti?: unknown, sid?: unknown, sub?: unknown }
  if (typeof jti !== 'string' || typeof sid !== 'string' || typeof sub !== 'string') return undefined
  if (!UUID.test(jti) || !UUID.test(sid)) return undefined
  return { jti, sid, sub, kid }
}

/** Throws invalid_grant for anything that is not a live refresh token of ours. */
export async function verifyRefreshToken (config: Pick<Config, 'issuer'>, keyring: Keyring, token: string, now: Date): Promise<RefreshClaims> {
  let kid = ''
  try {
    const { payload } = await jwtVerify(token, (header) => {
      kid = header.kid ?? ''
      const key = keyring.refreshVerificationKey(kid)
      if (key === undefined) throw new errors.JWKSNoMatchingKey()
      return key.publicKey
    }, { issuer: config.issuer, audience: config.issuer, typ: 'rt+jwt', algorithms: ['RS256'], currentDate: now, requiredClaims: ['exp', 'iat', 'jti', 'sid', 'sub'] })
    const claims = claimsOf(payload, kid)
    if (claims === undefined) throw new OAuthError('invalid_grant', 'the refresh token is invalid', { detail: 'claims malformed' })
    return claims
  } catch (cause) {
    if (cause instanceof OAuthError) throw cause
    const reason = cause instanceof errors.JOSEError ? cause.code : 'unparseable'
    throw new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked', { detail: `refresh token refused: ${reason}`, cause })
  }
}

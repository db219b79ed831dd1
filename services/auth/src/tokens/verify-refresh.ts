/**
 * Verifies a presented refresh token: our signature (any key that may still
 * have signed a live refresh token), `typ` rt+jwt, alg RS256, no embedded key,
 * key URL or crit, our issuer as both `iss` and `aud`, within its times, and
 * its ids uuids as we mint them (claims.ts: the rules the access token's
 * verifier applies too).
 *
 * The signature is checked with node:crypto on the calling thread, not with
 * jose: jose verifies through WebCrypto, which runs on libuv's thread pool,
 * the same threads argon2 hashes on, so under a login flood every refresh
 * waited behind password hashes (measured in docs/decisions.md, "Thread pool
 * and signing"). An RS256 verify costs about 0.05 ms. The claim checks are the
 * ones jwtVerify would make, on a payload whose signature is already proven.
 * @module
 */
import type { Config } from '../config.js'
import { OAuthError } from '../errors.js'
import type { Keyring } from '../keys/keyring.js'
import { FORBIDDEN_HEADERS, isUuid, refuseTimes } from './claims.js'
import { compactJwsSegments, decodeJsonSegment, rs256SignatureValid } from './jws.js'

export interface RefreshClaims {
  jti: string
  sid: string
  sub: string
  kid: string
}

function refuse (reason: string, cause?: unknown): OAuthError {
  return new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked', { detail: `refresh token refused: ${reason}`, cause })
}

/** Throws invalid_grant for anything that is not a live refresh token of ours. */
export async function verifyRefreshToken (config: Pick<Config, 'issuer'>, keyring: Keyring, token: string, now: Date): Promise<RefreshClaims> {
  const segments = compactJwsSegments(token)
  if (segments === undefined) throw refuse('not a compact JWS')
  let header: Record<string, unknown>
  let payload: Record<string, unknown>
  try {
    header = decodeJsonSegment(segments[0])
    payload = decodeJsonSegment(segments[1])
  } catch (cause) {
    throw refuse('unparseable', cause)
  }
  if (header.alg !== 'RS256') throw refuse('alg')
  if (header.typ !== 'rt+jwt') throw refuse('typ')
  const embedded = FORBIDDEN_HEADERS.find((name) => header[name] !== undefined)
  if (embedded !== undefined) throw refuse(`header ${embedded}`)
  const kid = typeof header.kid === 'string' ? header.kid : ''
  // A kid not heard of yet may be another instance's new key: refusing it would log the client's user out (Keyring.catchUp).
  const key = keyring.refreshVerificationKey(kid) ?? (await keyring.catchUp(kid) ? keyring.refreshVerificationKey(kid) : undefined)
  if (key === undefined) throw refuse('unknown kid')
  if (!rs256SignatureValid(segments, key.publicKey)) throw refuse('signature')

  const { iss, aud, jti, sid, sub } = payload
  if (iss !== config.issuer) throw refuse('iss')
  if (!(aud === config.issuer || (Array.isArray(aud) && aud.includes(config.issuer)))) throw refuse('aud')
  const timeRefusal = refuseTimes(payload, now.getTime())
  if (timeRefusal !== undefined) throw refuse(timeRefusal)
  // All three go to Postgres as uuids (tessera_refresh_grant, the session reads).
  if (!isUuid(jti) || !isUuid(sid) || !isUuid(sub)) throw refuse('claims malformed')
  return { jti, sid, sub, kid }
}

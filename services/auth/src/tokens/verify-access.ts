/**
 * Verifies a presented access token: the header says what we mint (RS256,
 * typ at+jwt, a kid we publish, no embedded key, key URL or crit: RFC 8725
 * §3.1, §3.11), our signature with the KeyObject already in the keyring, then
 * the claims: iss, aud (one of ours), exp and nbf against `now`, and the
 * claims every access token carries. A refresh token fails on typ and aud.
 *
 * node:crypto on the calling thread, as for refresh tokens
 * (verify-refresh.ts): @fastify/jwt's verifier re-imported the PEM on every
 * request (an async key callback yields a string, which fast-jwt turns into a
 * KeyObject each time), and the route decoded the token twice
 * (docs/decisions.md, "Access tokens verified with node:crypto").
 * @module
 */
import type { Config } from '../config.js'
import { InvalidTokenError } from '../errors.js'
import type { Keyring } from '../keys/keyring.js'
import { compactJwsSegments, decodeJsonSegment, rs256SignatureValid } from './jws.js'

export interface AccessClaims {
  sub: string
  sid: string
  clientId: string
  scope: string
}

const AT_JWT = new Set(['at+jwt', 'application/at+jwt'])
const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'crit'] as const
const REQUIRED_CLAIMS = ['exp', 'iat', 'sub', 'sid', 'jti'] as const

function decodeSegment (segment: string, what: string): Record<string, unknown> {
  try {
    return decodeJsonSegment(segment)
  } catch (err) {
    throw new InvalidTokenError(err instanceof SyntaxError ? `${what} is not base64url JSON` : `${what} is not a JSON object`)
  }
}

function refuseHeader (header: Record<string, unknown>): string | undefined {
  if (header.alg !== 'RS256') return `alg ${String(header.alg)} refused`
  if (typeof header.typ !== 'string' || !AT_JWT.has(header.typ.toLowerCase())) return 'typ is not at+jwt'
  if (typeof header.kid !== 'string') return 'no kid'
  const embedded = FORBIDDEN_HEADERS.find((name) => header[name] !== undefined)
  return embedded === undefined ? undefined : `header ${embedded} refused`
}

function refuseClaims (claims: Record<string, unknown>, config: Pick<Config, 'issuer' | 'audience'>, nowMs: number): string | undefined {
  const missing = REQUIRED_CLAIMS.find((name) => claims[name] === undefined)
  if (missing !== undefined) return `the ${missing} claim is required`
  const { iss, aud, exp, nbf, sub, sid } = claims
  if (iss !== config.issuer) return 'iss not allowed'
  const audiences = Array.isArray(aud) ? aud : [aud]
  if (!audiences.every((a) => typeof a === 'string') || !audiences.some((a) => config.audience.includes(a as string))) return 'aud not allowed'
  if (typeof exp !== 'number' || nowMs > exp * 1000) return 'expired'
  if (nbf !== undefined && (typeof nbf !== 'number' || nowMs < nbf * 1000)) return 'not yet valid'
  if (typeof sub !== 'string' || typeof sid !== 'string') return 'sub or sid missing'
  return undefined
}

/** Throws InvalidTokenError (its reason is logged, never sent) for anything that is not a valid access token of ours. */
export function verifyAccessToken (config: Pick<Config, 'issuer' | 'audience'>, keyring: Keyring, token: string, now: Date): AccessClaims {
  const segments = compactJwsSegments(token)
  if (segments === undefined) throw new InvalidTokenError('not a compact JWS')
  const header = decodeSegment(segments[0], 'header')
  const headerRefusal = refuseHeader(header)
  if (headerRefusal !== undefined) throw new InvalidTokenError(headerRefusal)
  const key = keyring.accessVerificationKey(header.kid as string)
  if (key === undefined) throw new InvalidTokenError(`unknown kid ${String(header.kid)}`)
  if (!rs256SignatureValid(segments, key.publicKey)) throw new InvalidTokenError('signature')
  const claims = decodeSegment(segments[1], 'payload')
  const claimRefusal = refuseClaims(claims, config, now.getTime())
  if (claimRefusal !== undefined) throw new InvalidTokenError(claimRefusal)
  const { client_id: clientId, scope } = claims
  return { sub: claims.sub as string, sid: claims.sid as string, clientId: typeof clientId === 'string' ? clientId : '', scope: typeof scope === 'string' ? scope : '' }
}

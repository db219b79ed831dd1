/**
 * Verifies a presented access token: the header says what we mint (RS256,
 * typ at+jwt, a kid we publish, no embedded key, key URL or crit: RFC 8725
 * §3.1, §3.11), our signature with the KeyObject already in the keyring, then
 * the claims: iss, aud (one of ours), exp and nbf against `now`, and the
 * claims every access token carries. A refresh token fails on typ and aud.
 * A token that passed is remembered, so its next use skips all but the time
 * checks (accessTokenVerifier below).
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
import { FORBIDDEN_HEADERS, isUuid, refuseTimes } from './claims.js'
import { compactJwsSegments, decodeJsonSegment, rs256SignatureValid } from './jws.js'

export interface AccessClaims {
  readonly sub: string
  readonly sid: string
  readonly clientId: string
  readonly scope: string
}

const AT_JWT = new Set(['at+jwt', 'application/at+jwt'])
/** The longest alg or kid said back in a reason: either is the client's text, and a log line should not grow with it. */
const CLIENT_TEXT_IN_REASON = 64
const REQUIRED_CLAIMS = ['exp', 'iat', 'sub', 'sid', 'jti', 'client_id', 'scope'] as const

function decodeSegment (segment: string, what: string): Record<string, unknown> {
  try {
    return decodeJsonSegment(segment)
  } catch (err) {
    throw new InvalidTokenError(err instanceof SyntaxError ? `${what} is not base64url JSON` : `${what} is not a JSON object`)
  }
}

function refuseHeader (header: Record<string, unknown>): string | undefined {
  if (header.alg !== 'RS256') return `alg ${String(header.alg).slice(0, CLIENT_TEXT_IN_REASON)} refused`
  if (typeof header.typ !== 'string' || !AT_JWT.has(header.typ.toLowerCase())) return 'typ is not at+jwt'
  if (typeof header.kid !== 'string') return 'no kid'
  const embedded = FORBIDDEN_HEADERS.find((name) => header[name] !== undefined)
  return embedded === undefined ? undefined : `header ${embedded} refused`
}

/** Which audiences a verifier takes: `/v1`'s own (TESSERA_AUDIENCE), or any, for revocation and SimpleJWT's verify (a token asked for a resource, RFC 8707, is still ours). */
type AudienceRule = readonly string[] | 'any'

function refuseClaims (claims: Record<string, unknown>, issuer: string, audience: AudienceRule, nowMs: number): string | undefined {
  const missing = REQUIRED_CLAIMS.find((name) => claims[name] === undefined)
  if (missing !== undefined) return `the ${missing} claim is required`
  const { iss, aud, sub, sid } = claims
  if (iss !== issuer) return 'iss not allowed'
  const audiences = Array.isArray(aud) ? aud : [aud]
  if (!audiences.every((a) => typeof a === 'string') || !audiences.some((a) => audience === 'any' || audience.includes(a as string))) return 'aud not allowed'
  const timeRefusal = refuseTimes(claims, nowMs)
  if (timeRefusal !== undefined) return timeRefusal
  // Both are read from Postgres as uuids, on every route that reads the session.
  if (!isUuid(sub) || !isUuid(sid)) return 'sub or sid is not a uuid'
  // Minted as a uuid, a client id and a scope string on every access token, as the refresh reader holds its jti: a null or
  // a number was let through, and client_id and scope of another type were read as '' (claims.ts).
  if (!isUuid(claims.jti)) return 'jti is not a uuid'
  if (typeof claims.client_id !== 'string' || typeof claims.scope !== 'string') return 'client_id or scope is not a string'
  return undefined
}

/** A kid this keyring does not verify access tokens with: the caller may catch up (Keyring.catchUp) and verify again. */
export class UnknownKidError extends InvalidTokenError {
  readonly kid: string

  constructor (kid: string) {
    super(`unknown kid ${kid.slice(0, CLIENT_TEXT_IN_REASON)}`)
    this.kid = kid
  }
}

interface VerifiedToken {
  claims: AccessClaims
  expiresAtMs: number
  notBeforeMs: number | undefined
}

/** Throws InvalidTokenError (its reason is logged, never sent) for anything that is not a valid access token of ours. */
function verifyAccessToken (issuer: string, audience: AudienceRule, keyring: Keyring, token: string, nowMs: number): VerifiedToken {
  const segments = compactJwsSegments(token)
  if (segments === undefined) throw new InvalidTokenError('not a compact JWS')
  const header = decodeSegment(segments[0], 'header')
  const headerRefusal = refuseHeader(header)
  if (headerRefusal !== undefined) throw new InvalidTokenError(headerRefusal)
  const key = keyring.accessVerificationKey(header.kid as string)
  if (key === undefined) throw new UnknownKidError(header.kid as string)
  if (!rs256SignatureValid(segments, key.publicKey)) throw new InvalidTokenError('signature')
  const claims = decodeSegment(segments[1], 'payload')
  const claimRefusal = refuseClaims(claims, issuer, audience, nowMs)
  if (claimRefusal !== undefined) throw new InvalidTokenError(claimRefusal)
  const { exp, nbf } = claims
  return {
    claims: Object.freeze({ sub: claims.sub as string, sid: claims.sid as string, clientId: claims.client_id as string, scope: claims.scope as string }),
    expiresAtMs: (exp as number) * 1000,
    notBeforeMs: typeof nbf === 'number' ? nbf * 1000 : undefined
  }
}

/**
 * How many verified tokens a process remembers: at about 1 KB each with its
 * claims, a few MB per worker. Past it the oldest is forgotten (first in,
 * first out); a token forgotten is verified again when it comes back, never
 * refused for it.
 */
const REMEMBERED_TOKENS = 4096

export interface AccessTokenVerifier {
  /** The token's claims; throws InvalidTokenError (its reason is logged, never sent) for anything that is not a valid access token of ours. */
  verify: (token: string, now: Date) => AccessClaims
  /** How many verified tokens it remembers now. */
  readonly remembered: number
}

/**
 * Verifies access tokens and remembers the ones that passed, as fast-jwt's
 * verifier cache does for @fastify/jwt: a client presents the same token on
 * every call for its lifetime, and its decoding and signature check were a
 * third of Tessera's CPU per /v1/me (docs/decisions.md, "Verified access
 * tokens remembered"). A verification depends on the token's bytes
 * (the memory's key), the configuration (fixed for the process), the keyring
 * (the memory is emptied whenever a reload changes a kid held or its
 * state, so a key revoked or retired refuses its tokens from the reload on)
 * and the time: exp and nbf are checked on every use, remembered or not
 * (caches that skipped them on a hit are a known bug class:
 * nearform/fast-jwt#29, dropwizard-auth-jwt#29). Only
 * tokens that passed are remembered, so garbage cannot fill it.
 */
export function accessTokenVerifier (config: Pick<Config, 'issuer' | 'audience'>, keyring: Keyring, capacity = REMEMBERED_TOKENS): AccessTokenVerifier {
  const verified = new Map<string, VerifiedToken>()
  let keyringVersion = keyring.version
  return {
    verify (token, now) {
      if (keyring.version !== keyringVersion) {
        verified.clear()
        keyringVersion = keyring.version
      }
      const nowMs = now.getTime()
      const known = verified.get(token)
      if (known === undefined) {
        const fresh = verifyAccessToken(config.issuer, config.audience, keyring, token, nowMs)
        if (verified.size >= capacity) verified.delete(verified.keys().next().value as string)
        verified.set(token, fresh)
        return fresh.claims
      }
      if (nowMs >= known.expiresAtMs) {
        verified.delete(token)
        throw new InvalidTokenError('expired')
      }
      if (known.notBeforeMs !== undefined && nowMs < known.notBeforeMs) throw new InvalidTokenError('not yet valid')
      return known.claims
    },
    get remembered () { return verified.size }
  }
}

/**
 * An access token of ours for any audience, as the verifier above judges
 * everything else, never remembered: revocation and SimpleJWT's verify take
 * tokens asked for a resource too, and are rare. A kid not yet heard of is
 * caught up on, as at /v1: a revocation this instance ignored would leave the
 * session live. Throws InvalidTokenError.
 */
export async function verifyAnyAudienceAccessToken (issuer: string, keyring: Keyring, token: string, now: Date): Promise<AccessClaims> {
  try {
    return verifyAccessToken(issuer, 'any', keyring, token, now.getTime()).claims
  } catch (err) {
    if (!(err instanceof UnknownKidError) || !await keyring.catchUp(err.kid)) throw err
    return verifyAccessToken(issuer, 'any', keyring, token, now.getTime()).claims
  }
}

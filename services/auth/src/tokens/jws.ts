/**
 * Compact JWS with node:crypto on the calling thread: signing, and the
 * parsing and RS256 check both verifiers (verify-access.ts,
 * verify-refresh.ts) share before their own header and claim rules. jose signs
 * through WebCrypto, which runs on libuv's thread pool, the same four threads
 * that argon2 hashes on: under a login flood every refresh would queue its
 * signatures behind password hashes. A synchronous RS256 sign with a KeyObject
 * imported once costs about 0.2 ms and cannot queue. RSASSA-PKCS1-v1_5 is
 * deterministic, so the same header and claims give the same token byte for
 * byte (the refresh grace relies on it). See docs/decisions.md.
 * @module
 */
import { sign, verify, type KeyObject } from 'node:crypto'

export interface JwsHeader {
  alg: 'RS256'
  kid: string
  typ: 'at+jwt' | 'rt+jwt'
}

const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** A keyring holds a handful of kids; past this many headers, something is minting headers it should not, and the cache starts over. */
const MAX_CACHED_HEADERS = 64
const encodedHeaders = new Map<string, string>()

/** The header segment, which depends only on the kid and the token type: encoded once per pair, not once per token. */
function encodedHeader (header: JwsHeader): string {
  const key = `${header.typ} ${header.kid}`
  let encoded = encodedHeaders.get(key)
  if (encoded === undefined) {
    if (encodedHeaders.size >= MAX_CACHED_HEADERS) encodedHeaders.clear()
    // Built from the three fields in a fixed order, whatever object the caller passed.
    encoded = encode({ alg: header.alg, kid: header.kid, typ: header.typ })
    encodedHeaders.set(key, encoded)
  }
  return encoded
}

export function signCompactJws (header: JwsHeader, claims: object, privateKey: KeyObject): string {
  const input = `${encodedHeader(header)}.${encode(claims)}`
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
}

const SEGMENT = /^[A-Za-z0-9_-]+$/
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/**
 * Whether a segment is the one base64url spelling of its bytes. A last
 * character that carries fewer than six bits leaves its low bits unused, and
 * decoders ignore them (RFC 4648 §3.5), so flipping one gives another string
 * with the same bytes: a token anyone could respell and still have accepted,
 * past any deny-list, log search or cache keyed by its text. Two characters
 * left over carry one byte (the last one's low four bits unused), three carry
 * two (two bits); one left over is never whole.
 */
function canonical (segment: string): boolean {
  const leftOver = segment.length % 4
  if (leftOver === 0) return true
  if (leftOver === 1) return false
  return BASE64URL.indexOf(segment.charAt(segment.length - 1)) % (leftOver === 2 ? 16 : 4) === 0
}

export type JwsSegments = [header: string, payload: string, signature: string]

/** A compact JWS's three base64url segments; undefined when the text is not one, or not spelled as its bytes encode. */
export function compactJwsSegments (token: string): JwsSegments | undefined {
  const parts = token.split('.')
  return parts.length === 3 && parts.every((p) => SEGMENT.test(p) && canonical(p)) ? parts as JwsSegments : undefined
}

/** A segment's JSON object: throws SyntaxError when it is not JSON, TypeError when it is not an object. */
export function decodeJsonSegment (segment: string): Record<string, unknown> {
  const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError('not a JSON object')
  return value as Record<string, unknown>
}

/** Whether the RS256 signature covers the header and payload segments. */
export function rs256SignatureValid ([headerPart, payloadPart, signaturePart]: JwsSegments, publicKey: KeyObject): boolean {
  return verify('sha256', Buffer.from(`${headerPart}.${payloadPart}`), publicKey, Buffer.from(signaturePart, 'base64url'))
}

/**
 * Client secrets: 256 random bits, shown once, stored as SHA-256. A secret
 * this long cannot be guessed or brute-forced from its digest, so a slow
 * password hash would buy nothing and would put every client_credentials
 * request on the argon2 queue (docs/decisions.md, "Client secrets").
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

const SECRET_BYTES = 32

/** What generateSecret makes: 32 bytes as base64url, 43 characters, which a client id may also be. */
const SECRET_SHAPE = /^[A-Za-z0-9_-]{43}$/

/**
 * Whether a client id a request gave could be a client's secret: a client
 * that swaps its id and secret (in the body or in Basic) sends the secret
 * as its id. Such an id, unknown, is kept out of the audit trail.
 */
export function looksLikeSecret (clientId: string): boolean {
  return SECRET_SHAPE.test(clientId)
}

export function secretDigest (secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest()
}

export function generateSecret (): { secret: string, digest: Buffer } {
  const secret = randomBytes(SECRET_BYTES).toString('base64url')
  return { secret, digest: secretDigest(secret) }
}

/** Constant time in the digest's content; a missing stored digest still costs one comparison. */
export function digestMatches (presented: Buffer, stored: Buffer | null): boolean {
  const equal = timingSafeEqual(presented, stored ?? Buffer.alloc(presented.length))
  return stored !== null && equal
}

/**
 * Public keys from the issuer's JWKS, fetched and cached by get-jwks. On top
 * of its cache we remember the last key seen under each kid, so that while the
 * JWKS cannot be fetched (issuer or gateway down) tokens signed by a key we
 * already knew keep verifying. A kid the JWKS answers without (withdrawn or
 * revoked) is forgotten at once.
 * @module
 */
import buildGetJwks from 'get-jwks'

export type KeySource = (kid: string, alg: string) => Promise<string>

export function createKeySource (jwksUrl: string, ttlMs: number): KeySource {
  const url = new URL(jwksUrl)
  const jwks = buildGetJwks({ ttl: ttlMs, jwksPath: url.pathname })
  const known = new Map<string, string>()
  return async (kid, alg) => {
    try {
      const pem = await jwks.getPublicKey({ domain: url.origin, kid, alg })
      known.set(kid, pem)
      return pem
    } catch (err) {
      const pem = known.get(kid)
      if ((err as { code?: string }).code === 'JWK_NOT_FOUND') known.delete(kid)
      else if (pem !== undefined) return pem
      throw err
    }
  }
}

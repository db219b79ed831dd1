/**
 * Public keys from the issuer's JWKS, through jose's createRemoteJWKSet:
 * - a fetched set is used for `cacheMaxAge`, then fetched again; while it
 *   cannot be fetched nothing verifies, so a key the issuer has withdrawn or
 *   revoked is trusted for at most `cacheMaxAge` after the last good fetch,
 *   never forever;
 * - a token with a kid the set lacks makes jose fetch again at most once per
 *   `cooldown`: within it the miss is answered at once, from memory;
 * - a failed fetch is not retried for `cooldown` either (jose would retry on
 *   every request), so a down issuer is not hammered by our traffic.
 * @module
 */
import { KeyObject, type webcrypto } from 'node:crypto'
import { createRemoteJWKSet, type JWSHeaderParameters } from 'jose'

export type KeySource = (kid: string, alg: string) => Promise<string>

export class JwksUnavailableError extends Error {}

export function createKeySource (jwksUrl: string, options: { cacheMaxAgeMs: number, cooldownMs: number }): KeySource {
  const remote = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge: options.cacheMaxAgeMs, cooldownDuration: options.cooldownMs })
  const pems = new WeakMap<object, string>()
  let failedAt = -Infinity
  return async (kid, alg) => {
    if (!remote.fresh && Date.now() - failedAt < options.cooldownMs) throw new JwksUnavailableError('the JWKS could not be fetched recently; not retrying yet')
    let key
    try {
      key = await remote({ kid, alg } satisfies JWSHeaderParameters)
    } catch (err) {
      if (!remote.fresh) failedAt = Date.now()
      throw err
    }
    let pem = pems.get(key)
    if (pem === undefined) {
      pem = KeyObject.from(key as webcrypto.CryptoKey).export({ type: 'spki', format: 'pem' }).toString()
      pems.set(key, pem)
    }
    return pem
  }
}

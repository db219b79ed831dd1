/**
 * Public keys from the issuer's JWKS, through jose's createRemoteJWKSet:
 * - a fetched set is used for `cacheMaxAge`, then fetched again; while it
 *   cannot be fetched nothing verifies, so a key the issuer has withdrawn or
 *   revoked is trusted for at most `cacheMaxAge` after the last good fetch,
 *   never forever;
 * - a token with a kid the set lacks makes jose fetch again at most once per
 *   `cooldown`: within it the miss is answered at once, from memory;
 * - a failed fetch is not retried for `cooldown` either (jose would retry on
 *   every request: its own cooldown starts only at a successful fetch), so a
 *   down issuer is not hammered by our traffic; while the set is still fresh,
 *   its keys keep verifying meanwhile, and only a kid it lacks waits.
 *
 * A key a freshly fetched set lacks is the token's fault (401); a set that
 * could not be fetched, or came back unusable, is no fault of the token, so
 * it is told apart (JwksUnavailableError, a 503): a client told its token is
 * invalid throws it away and sends its user to log in again, for an outage
 * that a retry a little later would have ridden out. So is a kid missed
 * within the cooldown, judged against a set that may predate it: after
 * `tessera keys rotate --now` or `keys revoke`, the issuer signs at once with
 * a key no verifier has fetched yet, and a 401 would log every user out for
 * up to the cooldown. And so is a kid that a fetch made for the token lacks
 * when the token was issued less than SET_LAG_MS (plus the clock skew)
 * before that fetch: the set may be older than the fetch (the gateway keeps
 * its copy up to 2 s) and older than the key. The token's `iat` is read
 * unverified here, but it only ever turns a 401 into a 503, never accepts.
 * @module
 */
import { KeyObject, type webcrypto } from 'node:crypto'
import { createRemoteJWKSet, customFetch, errors, type FetchImplementation, type JWSHeaderParameters } from 'jose'

/** `issuedAt` is the token's `iat` (unverified), when it is a number. */
export type KeySource = (kid: string, alg: string, issuedAt?: number) => Promise<string>

/** The issuer's keys cannot be had right now; `retryAfterSeconds` is when the next fetch may be tried. */
export class JwksUnavailableError extends Error {
  readonly retryAfterSeconds: number

  constructor (message: string, retryAfterSeconds: number, options?: ErrorOptions & { publicDetail?: string }) {
    super(message, options)
    this.retryAfterSeconds = retryAfterSeconds
    this.publicDetail = options?.publicDetail ?? 'the issuer\'s signing keys cannot be fetched to check the access token; retry shortly'
  }

  /** What the 503 says to the client. */
  readonly publicDetail: string
}

/**
 * How much older than its fetch a key set can be: the shipped gateway keeps
 * its copy for under 2 s (docs/operators.md, "How long an old key set can
 * live"), and the instance behind it hears of a key change within
 * milliseconds.
 */
export const SET_LAG_MS = 2000

/** Far above any real key set: Tessera's holds a few RSA keys of under 1 KiB each. */
export const JWKS_MAX_BYTES = 1024 * 1024

/**
 * fetch, but a body past JWKS_MAX_BYTES is a failed fetch: jose reads the
 * body whole, and the URL is the operator's, yet a wrong one (a file server,
 * a log endpoint) filled memory for up to jose's 5 s timeout. The body is
 * still read within that timeout: the signal jose passes aborts it too.
 */
const boundedFetch: FetchImplementation = async (url, options) => {
  const response = await fetch(url, options)
  if (response.body === null) return response
  const declared = Number(response.headers.get('content-length'))
  if (declared > JWKS_MAX_BYTES) {
    await response.body.cancel()
    throw new Error(`the JWKS response is ${declared} bytes, more than the ${JWKS_MAX_BYTES} notes reads`)
  }
  const chunks: Uint8Array[] = []
  let size = 0
  // Leaving the loop (the throw) cancels the body, which closes the connection.
  for await (const chunk of response.body) {
    size += chunk.byteLength
    if (size > JWKS_MAX_BYTES) throw new Error(`the JWKS response is more than the ${JWKS_MAX_BYTES} bytes notes reads`)
    chunks.push(chunk)
  }
  // jose reads only the status and the JSON.
  return new Response(Buffer.concat(chunks), { status: response.status })
}

export function createKeySource (jwksUrl: string, options: { cacheMaxAgeMs: number, cooldownMs: number, clockSkewMs: number }): KeySource {
  const remote = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge: options.cacheMaxAgeMs, cooldownDuration: options.cooldownMs, [customFetch]: boundedFetch })
  const pems = new WeakMap<object, string>()
  let failedAt = -Infinity
  const retryAfter = (): number => Math.max(1, Math.ceil((failedAt + options.cooldownMs - Date.now()) / 1000))
  // When jose last fetched for a kid it lacked, and the kids that fetch (or
  // one since) confirmed missing: within the cooldown those stay 401, since
  // a set fetched after the token came lacks them; any other kid is a 503.
  // Each is looked up with its time, so pruning only bounds the memory; it
  // runs at most once per cooldown, not on every add: a burst of tokens
  // waiting on one slow fetch all miss together, and a scan per miss cost
  // CPU quadratic in the burst. What it keeps: kids of the last two cooldowns.
  let fetchedAt = -Infinity
  const confirmedMissing = new Map<string, number>()
  let prunedAt = -Infinity
  const confirmMissing = (kid: string, now: number): void => {
    if (now - prunedAt > options.cooldownMs) {
      for (const [missing, at] of confirmedMissing) if (at + options.cooldownMs < now) confirmedMissing.delete(missing)
      prunedAt = now
    }
    confirmedMissing.set(kid, now)
  }
  const untilNextFetch = (): number => fetchedAt === -Infinity
    ? Math.ceil(options.cooldownMs / 1000)
    : Math.max(1, Math.ceil((fetchedAt + options.cooldownMs - Date.now()) / 1000))
  // Only while a failed fetch is cooling down, so a copy of the set is not made per request.
  const wouldFetch = (kid: string): boolean => !remote.fresh || remote.jwks()?.keys.some((key) => key.kid === kid) !== true
  return async (kid, alg, issuedAt) => {
    if (Date.now() - failedAt < options.cooldownMs && wouldFetch(kid)) throw new JwksUnavailableError('the JWKS could not be fetched recently; not retrying yet', retryAfter())
    // A fresh set, cooling down: jose answers a kid it lacks from memory, without fetching.
    const answeredFromMemory = remote.fresh && remote.coolingDown
    // A stale set is fetched again before the kid is looked up.
    const reloads = !remote.fresh
    const asked = Date.now()
    let key
    try {
      key = await remote({ kid, alg } satisfies JWSHeaderParameters)
      if (reloads) fetchedAt = Date.now()
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) {
        const now = Date.now()
        // Issued further ahead than the clock skew: no key begun since the set was made explains it, and the claims
        // check refuses it anyway. Else such a token, forged or from a host whose clock is wrong, stayed a 503 until its iat came.
        if (issuedAt !== undefined && issuedAt * 1000 > asked + options.clockSkewMs) throw err
        if (!answeredFromMemory) {
          fetchedAt = now
          // Issued before anything the fetched set may predate: the key was withdrawn, or never the issuer's. (No usable iat: the claims check refuses it anyway.)
          if (issuedAt === undefined || issuedAt * 1000 <= asked - SET_LAG_MS - options.clockSkewMs) {
            confirmMissing(kid, now)
            throw err
          }
        } else if ((confirmedMissing.get(kid) ?? -Infinity) + options.cooldownMs >= now) {
          throw err
        }
        throw new JwksUnavailableError('a kid the set fetched moments ago lacks: the issuer may have just begun signing with it (keys rotate --now, keys revoke); not fetching again until the cooldown ends', untilNextFetch(), {
          publicDetail: 'the access token\'s key is newer than the issuer\'s key set fetched moments ago; retry shortly'
        })
      }
      if (err instanceof errors.JWKSMultipleMatchingKeys) throw err
      // A fetch that failed or timed out, an answer other than 200, a body that is not a key set.
      failedAt = Date.now()
      throw new JwksUnavailableError('the JWKS could not be fetched', retryAfter(), { cause: err })
    }
    let pem = pems.get(key)
    if (pem === undefined) {
      pem = KeyObject.from(key as webcrypto.CryptoKey).export({ type: 'spki', format: 'pem' }).toString()
      pems.set(key, pem)
    }
    return pem
  }
}

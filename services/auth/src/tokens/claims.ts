/**
 * The rules both verifiers (verify-access.ts, verify-refresh.ts) apply to
 * what only a holder of our signing key could have written: the header
 * members we never set and the shapes of the claims we mint. A token signed
 * by us but shaped otherwise (a key misused by a tool, a bug in an older
 * release) is refused by both readers alike, never passed on to Postgres,
 * where a sid or sub that is not a uuid, or holds a NUL, was a 500 on every
 * route that reads the session.
 * @module
 */

/** Members that would name a key or add rules of their own (RFC 8725 §3.1, RFC 7515 §4.1.11): we set none, so a token with one is not ours. */
export const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'crit'] as const

/** A uuid as Tessera mints it (randomUUID, Postgres's own output): lower case, hyphenated, nothing around it. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export function isUuid (value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value)
}

/**
 * How far in the future an iat may be, by the same bound keys/advance.ts
 * grants verifiers on exp: every instance dates tokens by Postgres's clock
 * (db/database-clock.ts), read a little apart (a round trip's error, a sync
 * every 10 s). Past it the token was not minted by a Tessera on our database's clock.
 */
const ISSUED_AT_LEEWAY_MS = 60_000

/** A NumericDate (RFC 7519 §2) JSON can write: a number, and finite (1e400 parses as Infinity, a token that would never expire). */
export function isNumericDate (value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

/** Why the time claims refuse the token at `nowMs`, or undefined: exp passed (RFC 7519 §4.1.4), nbf not reached, iat missing or in the future. */
export function refuseTimes ({ exp, nbf, iat }: Record<string, unknown>, nowMs: number): string | undefined {
  if (!isNumericDate(exp) || nowMs >= exp * 1000) return 'expired'
  if (nbf !== undefined && (!isNumericDate(nbf) || nowMs < nbf * 1000)) return 'not yet valid'
  if (!isNumericDate(iat) || iat * 1000 > nowMs + ISSUED_AT_LEEWAY_MS) return 'iat missing or in the future'
  return undefined
}

/**
 * Which scope a token carries (RFC 6749 §3.3): the requested scopes that the
 * configured set allows, or the whole configured set when none is requested.
 * A request naming only unknown scopes is refused rather than silently
 * widened.
 * @module
 */
import { SCOPE_TOKEN_PATTERN } from '../config.js'
import { OAuthError } from '../errors.js'

/**
 * The scopes a request names, or undefined when it names none. Runs of
 * spaces and spaces at the ends are forgiven; anything else outside §3.3's
 * scope-token (a tab, a quote, a backslash, a control or non-ASCII
 * character) is refused as malformed, not read as part of a name.
 */
export function requestedScopes (requested: string | undefined): string[] | undefined {
  const trimmed = requested?.replace(/^ +| +$/g, '')
  if (trimmed === undefined || trimmed === '') return undefined
  const wanted = [...new Set(trimmed.split(/ +/))]
  if (!wanted.every((s) => SCOPE_TOKEN_PATTERN.test(s))) {
    // Named in words: RFC 6749 §5.2 allows no quote, backslash or non-ASCII character (§) in an error_description.
    throw new OAuthError('invalid_scope', 'scope must be scope names separated by spaces, each of printable ASCII characters other than space, double quote and backslash (RFC 6749 section 3.3)')
  }
  return wanted
}

export function grantedScope (requested: string | undefined, allowed: readonly string[]): string {
  const wanted = requestedScopes(requested)
  if (wanted === undefined) return allowed.join(' ')
  const granted = wanted.filter((s) => allowed.includes(s))
  if (granted.length === 0) throw new OAuthError('invalid_scope', 'none of the requested scopes is available', { detail: `requested: ${requested}` })
  return granted.join(' ')
}

/** A refresh may narrow the session's scope, never widen it. `wanted` is requestedScopes' reading of the request, made once per refresh. */
export function narrowedScope (wanted: readonly string[] | undefined, sessionScope: string): string {
  if (wanted === undefined) return sessionScope
  const held = sessionScope.split(' ')
  if (!wanted.every((s) => held.includes(s))) throw new OAuthError('invalid_scope', 'a refresh cannot widen the scope of its session')
  return wanted.join(' ')
}

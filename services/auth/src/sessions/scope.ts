/**
 * Which scope a token carries (RFC 6749 §3.3): the requested scopes that the
 * configured set allows, or the whole configured set when none is requested.
 * A request naming only unknown scopes is refused rather than silently
 * widened.
 * @module
 */
import { OAuthError } from '../errors.js'

export function grantedScope (requested: string | undefined, allowed: readonly string[]): string {
  if (requested === undefined || requested.trim() === '') return allowed.join(' ')
  const wanted = [...new Set(requested.trim().split(/ +/))]
  const granted = wanted.filter((s) => allowed.includes(s))
  if (granted.length === 0) throw new OAuthError('invalid_scope', 'none of the requested scopes is available', { detail: `requested: ${requested}` })
  return granted.join(' ')
}

/** A refresh may narrow the session's scope, never widen it. */
export function narrowedScope (requested: string | undefined, sessionScope: string): string {
  if (requested === undefined || requested.trim() === '') return sessionScope
  const held = sessionScope.split(' ')
  const wanted = [...new Set(requested.trim().split(/ +/))]
  if (!wanted.every((s) => held.includes(s))) throw new OAuthError('invalid_scope', 'a refresh cannot widen the scope of its session')
  return wanted.join(' ')
}

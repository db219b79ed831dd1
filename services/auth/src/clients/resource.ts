/**
 * Resource indicators (RFC 8707): a `resource` is an absolute URI without a
 * fragment, and a token is for one resource at a time (one `aud`), so a
 * request naming several is refused rather than given a token every one of
 * them would accept (docs/decisions.md, "One resource per token").
 * @module
 */
import { OAuthError } from '../errors.js'

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/
// What a URI may not hold literally (RFC 3986 §2): anything but printable ASCII (space, controls, and
// non-ASCII, which an IRI holds and a URI percent-encodes), quotes, angle brackets and the like.
const NOT_URI = /[^\x21-\x7e]|["<>\\^`{|}]/

export function isResourceIndicator (value: string): boolean {
  if (value.length > 512 || !SCHEME.test(value) || NOT_URI.test(value) || value.includes('#')) return false
  try {
    return new URL(value).protocol !== ''
  } catch {
    return false
  }
}

/** Compared as given, by every grant and by registration alike, so a resource registration accepts is one a grant can serve. */
export const namesIssuer = (resource: string, issuer: string): boolean => resource === issuer

/**
 * The one resource asked for, or undefined; throws invalid_target for a
 * malformed or repeated one, and for the issuer: that is the `aud` of refresh
 * tokens, and an access token sharing it would make a sibling that checks
 * `aud` but not `typ` take a refresh token for one (RFC 8725 §3.12).
 */
export function requestedResource (resource: string | string[] | undefined, issuer: string): string | undefined {
  if (resource === undefined) return undefined
  const values = Array.isArray(resource) ? resource : [resource]
  if (values.length > 1) throw new OAuthError('invalid_target', 'ask for one resource per request')
  const value = values[0]
  if (value === undefined || !isResourceIndicator(value)) throw new OAuthError('invalid_target', 'resource: must be an absolute URI without a fragment')
  if (namesIssuer(value, issuer)) throw new OAuthError('invalid_target', 'resource: the issuer is no resource; its audience is that of refresh tokens')
  return value
}

/** The audience for a resource the caller may ask for; undefined (the default audience) when none was asked. */
export function audienceFor (resource: string | undefined, allowed: readonly string[]): string | undefined {
  if (resource === undefined) return undefined
  if (!allowed.includes(resource)) throw new OAuthError('invalid_target', 'this client may not ask for that resource', { detail: `resource ${resource}` })
  return resource
}

/**
 * The one Authorization header a request may carry. Node keeps the first of
 * two and drops the rest, but the header is not a list (RFC 9110 §11.6.2):
 * a request with two is ambiguous, and a proxy in front that reads the last
 * would see another identity than Tessera. Such a request is refused.
 * @module
 */
import type { FastifyRequest } from 'fastify'
import { OAuthError } from '../errors.js'
import { repeatsHeader } from './header-lines.js'

/**
 * The request's Authorization header, or undefined; throws a 400
 * invalid_request when it has more than one, with `challenge` as its
 * WWW-Authenticate (a Bearer route's, RFC 6750 §3.1).
 */
export function authorizationHeader (request: FastifyRequest, challenge?: string): string | undefined {
  const value = request.headers.authorization
  if (value === undefined) return undefined
  if (repeatsHeader(request.raw, 'authorization')) {
    throw new OAuthError('invalid_request', 'the request has more than one Authorization header', { challenge })
  }
  return value
}

/**
 * The client's address, for the per-IP limit, the request line and the
 * audit trail. From a TESSERA_TRUST_PROXY peer, Fastify's `request.ip` is
 * what X-Forwarded-For says, and proxy-addr passes any text through: a peer
 * that is trusted but not the gateway (which replaces the header) could name
 * a new "address" per request, each its own budget, each 16 KB stored and
 * logged. Only an address is taken; anything else counts as the peer's own.
 * @module
 */
import { isIP } from 'node:net'
import type { FastifyRequest } from 'fastify'

export function clientAddress (request: FastifyRequest): string {
  const given = request.ip
  if (isIP(given) !== 0) return given
  return request.socket.remoteAddress ?? 'unknown'
}

/**
 * The client's address, for the per-IP limit, the request line and the
 * audit trail. From a TESSERA_TRUST_PROXY peer, Fastify's `request.ip` is
 * what X-Forwarded-For says, and proxy-addr passes any text through: a peer
 * that is trusted but not the gateway (which replaces the header) could name
 * a new "address" per request, each its own budget, each 16 KB stored and
 * logged. Only an address is taken; anything else counts as the peer's own.
 * @module
 */
import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'
import type { FastifyRequest } from 'fastify'

export function clientAddress (request: FastifyRequest): string {
  return addressOrPeer(request.ip, request.raw)
}

/** clientAddress of a request answered before Fastify saw it: `given` is what Fastify's `request.ip` would be. */
export function addressOrPeer (given: string | undefined, message: IncomingMessage): string {
  if (given !== undefined && isIP(given) !== 0) return given
  return message.socket.remoteAddress ?? 'unknown'
}

/** The hextets of an IPv6 address without a zone: WHATWG URL parsing canonicalizes it (lowercase, an IPv4 tail as two hextets, one `::`), leaving only `::` to expand. */
function hextets (address: string): number[] {
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1)
  const [head = '', tail] = canonical.split('::')
  const parse = (part: string): number[] => part === '' ? [] : part.split(':').map((hextet) => parseInt(hextet, 16))
  const left = parse(head)
  if (tail === undefined) return left
  const right = parse(tail)
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right]
}

/**
 * The per-IP limit's key. An IPv6 client counts by its /64: one host (a
 * privacy address per connection) or one site may use every address of the
 * prefix, so keyed by the address it would get a budget per request. An
 * IPv4-mapped address (`::ffff:198.51.100.9`, how a dual-stack listener sees
 * an IPv4 client) is that IPv4 client. @fastify/rate-limit's own key
 * generator does the same, but ours replaces it (clientAddress).
 */
export function rateLimitKey (request: FastifyRequest): string {
  return limitKey(clientAddress(request))
}

/**
 * rateLimitKey's grouping of an address already taken. The gateway's
 * limit_req key ($tessera_limit_key, nginx/templates/tessera.conf.template)
 * is the same string for the same client: e2e/gateway-limit-key.test.ts
 * compares the two on every form Nginx prints.
 */
export function limitKey (address: string): string {
  if (isIP(address) !== 6) return address
  const parts = hextets(address.split('%')[0] ?? '')
  const [h0, h1, h2, h3, h4, h5, h6 = 0, h7 = 0] = parts
  if (h0 === 0 && h1 === 0 && h2 === 0 && h3 === 0 && h4 === 0 && h5 === 0xffff) return `${h6 >> 8}.${h6 & 255}.${h7 >> 8}.${h7 & 255}`
  return `${parts.slice(0, 4).map((hextet) => hextet.toString(16)).join(':')}::/64`
}

/**
 * The Host header RFC 9112 §3.2 requires: a server must answer 400 to an
 * HTTP/1.1 request without one, to any request with more than one Host line,
 * and to one whose value is not a host. Node's own check of a missing Host is
 * off (buildApp says why), and Node keeps only the first of two Host lines.
 * @module
 */
import type { IncomingMessage } from 'node:http'
import { repeatsHeader } from './header-lines.js'

/**
 * RFC 3986's uri-host [":" port]: an IP literal in brackets (IPv6, or
 * IPvFuture), or a reg-name (an IPv4 address is one too), which may be empty.
 */
const HOST = /^(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+)\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/

/**
 * The check of each request's Host, which gives why it is refused, or
 * undefined. It runs on every request, the JWKS's included: the last value
 * found valid is kept, since behind the gateway nearly every request names
 * the same host, and comparing it costs less than the pattern.
 */
export function hostCheck (): (message: IncomingMessage) => string | undefined {
  let lastValid = ''
  return function hostRefusal (message) {
    const host = message.headers.host
    if (host === undefined) {
      return message.httpVersionMajor === 1 && message.httpVersionMinor === 1 ? 'an HTTP/1.1 request must carry a Host header' : undefined
    }
    if (host !== lastValid) {
      if (!HOST.test(host)) return 'the Host header is not a host name or address with an optional port'
      lastValid = host
    }
    return repeatsHeader(message, 'host') ? 'the request has more than one Host header' : undefined
  }
}

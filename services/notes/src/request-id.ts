/**
 * Which id a request is known by: the gateway's, when it comes from one of
 * NOTES_TRUST_PROXY's addresses, as Tessera's request ids are chosen
 * (services/auth/src/app.ts; notes shares no code with it by design). One id
 * then names the request in the gateway's access log, in the X-Request-Id
 * the client gets, in the problem body's `request_id` and in notes' log line.
 * From anyone else an X-Request-Id could forge log correlation (pick another
 * request's id), so notes makes its own.
 * @module
 */
import { randomUUID } from 'node:crypto'
import { BlockList, isIP } from 'node:net'

/** As Tessera takes one: 1 to 128 of A-Za-z0-9._:- (the gateway's $request_id is 32 hex digits). Two headers, which Node joins with ", ", are no id. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export type RequestIdOf = (given: unknown, peer: string | undefined) => string

/**
 * `trustProxy`: NOTES_TRUST_PROXY's entries, checked by config.ts. Node's
 * BlockList matches an IPv4 entry against the IPv4-mapped address a
 * dual-stack listener (HOST=::) reports as the peer too.
 */
export function requestIdSource (trustProxy: readonly string[]): RequestIdOf {
  const trusted = new BlockList()
  for (const entry of trustProxy) {
    const [address = '', prefix] = entry.split('/')
    const family = isIP(address) === 4 ? 'ipv4' : 'ipv6'
    if (prefix === undefined) trusted.addAddress(address, family)
    else trusted.addSubnet(address, Number(prefix), family)
  }
  const isTrusted = (peer: string | undefined): boolean => {
    const family = peer === undefined ? 0 : isIP(peer)
    return family !== 0 && trusted.check(peer ?? '', family === 4 ? 'ipv4' : 'ipv6')
  }
  return (given, peer) => typeof given === 'string' && REQUEST_ID.test(given) && isTrusted(peer) ? given : randomUUID()
}

const REQUEST_LINE = /^[A-Za-z]+ \S+ HTTP\/\d\.\d$/
const HEADER_NAME = 'x-request-id:'

/**
 * The X-Request-Id of a request Node's parser refused (its headers over the
 * limit, say), read from the chunk the parser failed in: only when that chunk
 * begins with the request line, as the gateway sends a request at once, so a
 * chunk from a body is never read as headers. Given once, or it is no id.
 */
export function givenRequestId (rawPacket: unknown): string | undefined {
  if (!Buffer.isBuffer(rawPacket)) return undefined
  const text = rawPacket.toString('latin1')
  const end = text.indexOf('\r\n\r\n')
  const lines = (end === -1 ? text : text.slice(0, end + 2)).split('\r\n')
  // Whole lines only: what follows the last CRLF is empty, or a line the chunk cut short.
  lines.pop()
  if (!REQUEST_LINE.test(lines[0] ?? '')) return undefined
  const given = lines.slice(1).filter((line) => line.slice(0, HEADER_NAME.length).toLowerCase() === HEADER_NAME).map((line) => line.slice(HEADER_NAME.length).trim())
  return given.length === 1 ? given[0] : undefined
}

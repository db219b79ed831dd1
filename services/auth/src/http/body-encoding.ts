/**
 * A request body Tessera cannot read as it was sent is refused as that, 415
 * (RFC 9110 §15.5.16; `invalid_request` on /oauth), rather than parsed into
 * an error about its fields or its JSON: a Content-Encoding other than
 * identity (Tessera decompresses nothing, RFC 9110 §8.4.1), or a charset
 * other than UTF-8 (JSON is UTF-8 between systems, RFC 8259 §8.1; a form's
 * percent-escapes are read as UTF-8). SimpleJWT's routes keep DRF's ways.
 * @module
 */
import type { FastifyReply, FastifyRequest } from 'fastify'

export class UnreadableBodyError extends Error {
  readonly code = 'TESSERA_UNREADABLE_BODY'
  readonly statusCode = 415
}

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i
const UTF8 = /^utf-?8$/i

export function refuseUnreadableBody (request: FastifyRequest, _reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void): void {
  const encoding = request.headers['content-encoding']?.trim()
  if (encoding !== undefined && encoding !== '' && encoding.toLowerCase() !== 'identity') {
    done(new UnreadableBodyError('the body has a Content-Encoding; send it uncompressed, without one'))
    return
  }
  const charset = CHARSET.exec(request.headers['content-type'] ?? '')?.[1]
  if (charset !== undefined && !UTF8.test(charset)) {
    done(new UnreadableBodyError('the body\'s charset is not UTF-8; send it as UTF-8'))
    return
  }
  done(null, payload)
}

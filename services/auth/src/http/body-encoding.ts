/**
 * A request body Tessera cannot read as it was sent is refused as that, 415
 * (RFC 9110 §15.5.16; a 400 `invalid_request` on /oauth, as RFC 6749 has no
 * 415), rather than parsed into an error about its fields or its JSON: a
 * Content-Encoding other than identity (Tessera decompresses nothing,
 * RFC 9110 §8.4.1), or a charset other than UTF-8 (JSON is UTF-8 between
 * systems, RFC 8259 §8.1; a form's percent-escapes are read as UTF-8).
 * SimpleJWT's routes keep DRF's ways,
 * but for one refusal every body route makes: a request with two
 * Content-Type headers, which Node reads as its first while a filter in
 * front that reads the last would parse the same bytes as another body (as
 * with two Authorization headers, http/authorization.ts); DRF behind a WSGI
 * server, which joins the two into one, answers 415 too.
 * @module
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { repeatsHeader } from './header-lines.js'

export class UnreadableBodyError extends Error {
  readonly code = 'TESSERA_UNREADABLE_BODY'
  readonly statusCode = 415
}

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i
const UTF8 = /^utf-?8$/i

const REPEATED_CONTENT_TYPE = 'the request has more than one Content-Type header'

type PreParsingDone = (err: Error | null, payload?: unknown) => void

/** The preParsing hook of SimpleJWT's body routes: only the refusal of two Content-Type headers. */
export function refuseRepeatedContentType (request: FastifyRequest, _reply: FastifyReply, payload: unknown, done: PreParsingDone): void {
  if (repeatsHeader(request.raw, 'content-type')) done(new UnreadableBodyError(REPEATED_CONTENT_TYPE))
  else done(null, payload)
}

export function refuseUnreadableBody (request: FastifyRequest, _reply: FastifyReply, payload: unknown, done: PreParsingDone): void {
  if (repeatsHeader(request.raw, 'content-type')) {
    done(new UnreadableBodyError(REPEATED_CONTENT_TYPE))
    return
  }
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

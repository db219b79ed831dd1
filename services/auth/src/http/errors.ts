/**
 * The one place errors become answers: domain errors (errors.ts), Fastify's
 * own (validation, content type, body size, the rate limiter's 429) and the
 * router's, shaped as RFC 6749 §5.2 on routes marked `errorFormat: 'oauth'`,
 * as Django REST framework's `{"detail"}` on SimpleJWT's routes
 * (`errorFormat: 'simplejwt'`), and as RFC 9457 problem+json everywhere else.
 * What an error carries as `detail` is logged; only the public text is sent.
 * @module
 */
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { DrfError, InvalidTokenError, isDatabaseUnavailable, loggedError, OAuthError, ProblemError } from '../errors.js'
import type { App } from './app-types.js'
import { NotUtf8Error, PrototypeMemberError, RepeatedJsonMemberError } from './json-body.js'
import { UnreadableBodyError } from './body-encoding.js'
import { MalformedFormError } from './form-body.js'
import { targetPath } from './target-path.js'
import { BODY_LIMIT } from './limits.js'
import { NO_NUL } from '../passwords/policy.js'
import { UUID_PATTERN } from '../util/uuid.js'

/** How a route answers errors, when not RFC 9457 problem+json (the default). */
export type ErrorFormat = 'oauth' | 'simplejwt'

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  503: 'Service Unavailable'
}

function statusTitle (status: number): string {
  return TITLES[status] ?? 'Bad Request'
}

function problem (reply: FastifyReply, request: FastifyRequest, status: number, title: string, detail?: string, type = 'about:blank', echoPath = true): FastifyReply {
  const path = echoPath ? targetPath(request.url) : ''
  return reply.status(status).type('application/problem+json').send({
    type,
    title,
    status,
    ...(detail === undefined ? {} : { detail }),
    ...(path === '' ? {} : { instance: path }),
    request_id: request.id
  })
}

/** What Node's HTTP parser refuses before there is a request: its status, title and detail. */
function unparsedRequest (code: string | undefined): [status: number, title: string, detail: string] {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return [408, 'Request Timeout', 'the request did not arrive in time']
  if (code === 'HPE_HEADER_OVERFLOW') return [431, 'Request Header Fields Too Large', 'the request\'s headers are larger than the server accepts']
  return [400, 'Bad Request', 'the request is not valid HTTP']
}

/** What the bytes of a refused request say of it: the path it asked for and the X-Request-Id it came with. */
interface RefusedRequest { path: string | undefined, givenId: string | undefined }

/** The path of a request line (`METHOD /path?query HTTP/1.x`, or its target in absolute-form), or undefined when it is not one. */
function requestPath (line: string | undefined): string | undefined {
  const [method = '', target = '', version = '', ...rest] = line?.split(' ') ?? []
  const path = targetPath(target).split('#')[0] ?? ''
  if (rest.length > 0 || !/^[A-Z]+$/.test(method) || !path.startsWith('/') || !/^HTTP\/1\.[01]$/.test(version)) return undefined
  return path
}

/** A header's value without the spaces and tabs HTTP allows around it, as Node's parser hands it to genReqId. */
function withoutOws (value: string): string {
  let start = 0
  let end = value.length
  while (start < end && (value[start] === ' ' || value[start] === '\t')) start++
  while (end > start && (value[end - 1] === ' ' || value[end - 1] === '\t')) end--
  return value.slice(start, end)
}

/**
 * Node hands the handler only the chunk its parser failed in (`rawPacket`):
 * when it begins with the request line (a request sent at once, as the
 * gateway sends one), the path and X-Request-Id are read from it; a chunk
 * from further into the request names neither. Read line by line, with no
 * regular expression over a whole line: the bytes are anyone's, up to 64 KB,
 * and a pattern that backtracks (a header of spaces with no line end made
 * one take minutes) held the worker's event loop all that time.
 */
function refusedRequest (raw: unknown): RefusedRequest {
  if (!Buffer.isBuffer(raw)) return { path: undefined, givenId: undefined }
  const text = raw.toString('latin1')
  // The headers and the CRLF ending the last of them; the whole chunk when it ends before their end.
  const end = text.indexOf('\r\n\r\n')
  const lines = (end === -1 ? text : text.slice(0, end + 2)).split('\r\n')
  // Whole lines only: what follows the last CRLF is empty, or a line the chunk cut short.
  lines.pop()
  const path = requestPath(lines[0])
  if (path === undefined) return { path: undefined, givenId: undefined }
  const name = 'x-request-id:'
  // Sent more than once, it is not one id: genReqId gets Node's joined value and refuses it too.
  const given = lines.slice(1).filter((line) => line.slice(0, name.length).toLowerCase() === name).map((line) => withoutOws(line.slice(name.length)))
  return { path, givenId: given.length === 1 ? given[0] : undefined }
}

/**
 * Fastify's `clientErrorHandler`: a request Node's parser refused (headers
 * over its limit, a malformed request line, a timeout) has no route and no
 * reply, so it is answered on the socket, as Fastify's own handler does, but
 * in the contract's shape: its route's format, found from the path when its
 * request line can be read (`errorFormatOf`, problem+json otherwise), and a
 * request id (`requestId`, as genReqId gives one, the gateway's if the peer
 * is trusted) in X-Request-Id, the problem's body and the log.
 */
export function unparsedRequestHandler (errorFormatOf: (path: string) => ErrorFormat | undefined, requestId: (given: string | undefined, peer: string | undefined) => string): (this: App, err: NodeJS.ErrnoException & { rawPacket?: unknown }, socket: Socket) => void {
  return function answerUnparsedRequest (err, socket) {
    // A reset connection has nobody left to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const [status, title, detail] = unparsedRequest(err.code)
    const refused = refusedRequest(err.rawPacket)
    const id = requestId(refused.givenId, socket.remoteAddress)
    const format = refused.path === undefined ? undefined : errorFormatOf(refused.path)
    this.log.debug({ reqId: id, status, code: err.code }, 'unparsed request')
    const [type, headers, body] = format === 'oauth'
      ? ['application/json; charset=utf-8', 'Cache-Control: no-store\r\nPragma: no-cache\r\n', { error: 'invalid_request', error_description: detail }]
      : format === 'simplejwt'
        ? ['application/json; charset=utf-8', '', { detail }]
        : ['application/problem+json', '', { type: 'about:blank', title, status, detail, request_id: id }]
    const json = JSON.stringify(body)
    if (socket.writable) {
      socket.write(`HTTP/1.1 ${status} ${title}\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(json)}\r\nX-Request-Id: ${id}\r\nX-Content-Type-Options: nosniff\r\n${headers}Connection: close\r\n\r\n${json}`)
    }
    socket.destroy(err)
  }
}

/**
 * Errors the router raises before any route runs (a path parameter longer
 * than it allows, a malformed percent-encoding): the contract's shape, in
 * `format` (the path's, as `unreadablePathFormat` finds it), and nothing of
 * the path echoed back, since the path is what was wrong.
 */
export function answerFrameworkError (err: FastifyError, request: FastifyRequest, reply: FastifyReply, format: ErrorFormat | undefined): FastifyReply {
  const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH'
  const status = tooLong ? 414 : 400
  const detail = tooLong ? 'a path segment is longer than allowed' : 'the path is not a valid URL'
  request.log.info({ status, code: err.code }, 'bad request')
  if (format === 'simplejwt') return reply.status(status).send({ detail })
  return format === 'oauth'
    ? oauthError(reply, status, 'invalid_request', detail)
    : problem(reply, request, status, statusTitle(status), detail, 'about:blank', false)
}

/**
 * The error format of a path the router could not read: no route can be
 * matched to it, so it takes the format of the routes in whose directory it
 * lies (`/oauth/` for /oauth/token and /oauth/revoke, SimpleJWT's prefix for
 * its routes), the deepest such directory if several. That is the gateway's
 * rule for a URI Nginx cannot read ($tessera_refusal_format), so a client
 * gets the same shape with or without the gateway in front.
 */
export function unreadablePathFormat (errorFormats: ReadonlyMap<string, ErrorFormat>, path: string): ErrorFormat | undefined {
  let found: { directory: string, format: ErrorFormat } | undefined
  for (const [route, format] of errorFormats) {
    const directory = route.slice(0, route.lastIndexOf('/') + 1)
    if (path.startsWith(directory) && directory.length > (found?.directory.length ?? 0)) found = { directory, format }
  }
  return found?.format
}

function oauthError (reply: FastifyReply, status: number, error: string, description: string): FastifyReply {
  return reply.status(status).header('cache-control', 'no-store').header('pragma', 'no-cache')
    .send({ error, error_description: description })
}

const CLIENT_CLOSED = 'ERR_CLIENT_CLOSED'

/**
 * A client that hangs up before its body has arrived makes Node fail the
 * request stream with ECONNRESET: the client's doing, not the database's,
 * though the code is the same. A connection can also be gone by the time a
 * request whose body did arrive is worked on: Node's parser destroys the
 * socket over bytes that follow the request and are not HTTP, and a hook
 * reading the client's address then finds none. Either way nobody is left to
 * read the answer; the log says what happened.
 */
function clientClosed (cause: unknown, when: 'before the body arrived' | 'before the answer'): FastifyError {
  return Object.assign(new Error(`the connection closed ${when}`, { cause }), { code: CLIENT_CLOSED, statusCode: 400 }) as FastifyError
}

/** Whether the request's connection is gone: nothing is worth doing for it. */
export function connectionGone (request: FastifyRequest): boolean {
  return request.raw.socket?.destroyed === true
}

/** What a hook throws for a request whose connection is gone. */
export function connectionClosed (): FastifyError {
  return clientClosed(undefined, 'before the answer')
}

/** Why a schema refused a field, in words a client can act on, not the schema's own (a pattern's regex, Ajv's capitals): Ajv's words otherwise. */
function validationReason (first: ValidationIssue | undefined, value: unknown, fromJson: boolean): string {
  const keyword = first?.keyword
  const params = (first?.params ?? {}) as { limit?: unknown, format?: unknown, pattern?: unknown }
  if (keyword === 'additionalProperties') return 'is not allowed'
  if (keyword === 'required') return 'is required'
  // A form parameter sent twice arrives as a list; in JSON a list is the client's own.
  if (keyword === 'type' && Array.isArray(value) && !fromJson) return 'is given more than once'
  if (keyword === 'maxLength') return `must be at most ${String(params.limit)} characters`
  if (keyword === 'minLength') return params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters`
  if (keyword === 'pattern' && params.pattern === NO_NUL) return 'must not contain a NUL character'
  if ((keyword === 'format' && params.format === 'uuid') || (keyword === 'pattern' && params.pattern === UUID_PATTERN)) return 'must be a UUID'
  return first?.message ?? 'is invalid'
}

type ValidationIssue = NonNullable<FastifyError['validation']>[number]

const isJsonRequest = (request: FastifyRequest): boolean => /^application\/json\b/i.test(request.headers['content-type'] ?? '')

/** What went wrong in the client's own words: a field name for validation errors. */
function clientMistake (err: FastifyError, body: unknown, fromJson: boolean): { status: number, detail: string } | undefined {
  if (err.validation !== undefined) {
    const first = err.validation[0]
    const path = first?.instancePath.replace(/^\//, '').replace(/\//g, '.') ?? ''
    // Parameters sent in the query string of a POST, its body empty.
    if (err.validationContext === 'body' && path === '' && first?.keyword === 'type' && (body === undefined || body === null)) {
      return { status: 400, detail: 'the request has no body; send its parameters in the body, form-encoded or as JSON' }
    }
    const field = first === undefined
      ? err.validationContext ?? 'body'
      : (first.params as { missingProperty?: string, additionalProperty?: string }).missingProperty ??
        (first.params as { additionalProperty?: string }).additionalProperty ??
        (path || (err.validationContext ?? 'body'))
    const value = path !== '' && typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[path] : undefined
    return { status: 400, detail: `${field}: ${validationReason(first, value, fromJson)}` }
  }
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return { status: 415, detail: 'unsupported content type; send application/json or application/x-www-form-urlencoded' }
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return { status: 413, detail: `the body is larger than ${BODY_LIMIT} bytes` }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return { status: 400, detail: 'the JSON body is empty' }
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return { status: 400, detail: 'the body is not valid JSON' }
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return { status: 400, detail: 'the Content-Length does not match the body' }
    case CLIENT_CLOSED: return { status: 400, detail: err.message }
  }
  if (err instanceof RepeatedJsonMemberError) {
    // The name is the client's own text: said back only when it is a plain one.
    const named = /^[A-Za-z0-9_.-]{1,64}$/.test(err.member) ? `"${err.member}"` : 'a member'
    return { status: 400, detail: `the JSON body names ${named} more than once` }
  }
  if (err instanceof PrototypeMemberError) return { status: 400, detail: 'the JSON body has a __proto__ or constructor.prototype member, which is refused' }
  if (err instanceof NotUtf8Error) return { status: 400, detail: 'the JSON body is not UTF-8' }
  if (err instanceof MalformedFormError) return { status: 400, detail: err.message }
  if (err instanceof UnreadableBodyError) return { status: 415, detail: err.message }
  if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON') return { status: 400, detail: 'the body is not valid JSON' }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return { status: err.statusCode, detail: 'the request is malformed' }
  }
  return undefined
}

/**
 * @fastify/rate-limit's refusal (the per-IP limit), which it throws with its
 * status alone: logged as what it is, so a search for rate limiting finds it,
 * never as a malformed request.
 */
const rateLimited = (err: FastifyError): boolean => err.statusCode === 429
const RATE_LIMIT_REASON = 'the per-IP rate limit'

function databaseOverload (err: FastifyError, request: FastifyRequest): OAuthError {
  // Its code and message, not its stack: an outage refuses every request at once, and each stack would be the same pg internals.
  request.log.warn(loggedError(err), 'database unavailable')
  // Not "overloaded": this is also a database that is down, and a client's report should not send anyone looking at capacity.
  return new OAuthError('temporarily_unavailable', 'the service is unavailable for a moment; retry later', { retryAfter: 1, detail: 'database unavailable', cause: err })
}

/**
 * A 503 is overload: during a flood thousands a second, each already on its
 * request line (status 503) and in the metrics, so its reason is debug.
 */
function refusalLevel (status: number): 'debug' | 'info' {
  return status === 503 ? 'debug' : 'info'
}

/**
 * SimpleJWT's token views name their scheme on every 401, as RFC 9110 §11.6.1
 * asks: `AUTH_HEADER_TYPES[0]` and the views' `www_authenticate_realm`, at
 * their defaults.
 */
const DRF_CHALLENGE = 'Bearer realm="api"'

/** DRF's shape for every refusal on SimpleJWT's routes: `{"detail"}`, plus `code` where SimpleJWT sends one. */
function drfError (err: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const [status, body] = drfRefusal(err, request, reply)
  if (status === 401) void reply.header('www-authenticate', DRF_CHALLENGE)
  return reply.status(status).send(body)
}

/** DRF's Throttled says these words, with the wait when the throttle knows it, as the limiter's Retry-After does. */
function drfThrottled (wait: number): string {
  if (!Number.isInteger(wait) || wait < 0) return 'Request was throttled.'
  return `Request was throttled. Expected available in ${wait} second${wait === 1 ? '' : 's'}.`
}

function drfRefusal (err: FastifyError, request: FastifyRequest, reply: FastifyReply): [status: number, body: unknown] {
  if (err instanceof DrfError) {
    request.log.info({ status: err.status, detail: err.detail ?? (err.cause instanceof OAuthError ? err.cause.detail : undefined) }, 'simplejwt refusal')
    return [err.status, err.body]
  }
  if (err instanceof OAuthError || err instanceof ProblemError) {
    request.log[refusalLevel(err.status)]({ status: err.status, detail: err.detail }, 'request refused')
    if (err.retryAfter !== undefined) void reply.header('retry-after', String(err.retryAfter))
    return [err.status, { detail: err instanceof OAuthError ? err.description : (err.publicDetail ?? err.title) }]
  }
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    request.log.info({ status: 415 }, 'bad request')
    // DRF's UnsupportedMediaType, which says the Content-Type back as it came.
    return [415, { detail: `Unsupported media type "${request.headers['content-type'] ?? ''}" in request.` }]
  }
  if (rateLimited(err)) {
    request.log.info({ status: 429, reason: RATE_LIMIT_REASON }, 'request refused')
    return [429, { detail: drfThrottled(Number(reply.getHeader('retry-after'))) }]
  }
  const mistake = clientMistake(err, request.body, isJsonRequest(request))
  if (mistake !== undefined) {
    request.log.info({ status: mistake.status, detail: mistake.detail }, 'bad request')
    return [mistake.status, { detail: mistake.detail }]
  }
  request.log.error({ err }, 'unexpected error')
  return [500, { detail: `A server error occurred (request id ${request.id}).` }]
}

/**
 * What `thrown` means for this request: the client gone (before its body, or
 * before the answer), or the database out of reach for a moment, which is
 * overload, answered in every route's own format like the hashing queue's.
 */
function refusalOf (thrown: FastifyError, request: FastifyRequest): FastifyError {
  if (thrown.code === CLIENT_CLOSED) return thrown
  if (request.raw.readableAborted) return clientClosed(thrown, 'before the body arrived')
  if (connectionGone(request)) return clientClosed(thrown, 'before the answer')
  return isDatabaseUnavailable(thrown) ? databaseOverload(thrown, request) : thrown
}

/**
 * Why a problem refused a request, for its log line: a token's own reason, or
 * what the client was told (which field, and what is wrong with it). Not the
 * status's title, which every refusal with that status shares: a 403 logged
 * as "Forbidden" did not tell a wrong current password from closed sign-up,
 * nor a 503 of /readyz a database out of reach from no signing key.
 */
function problemReason (err: ProblemError): string {
  return err instanceof InvalidTokenError ? err.reason : err.publicDetail ?? err.title
}

export function answerError (this: App, thrown: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const err = refusalOf(thrown, request)
  if (request.routeOptions.config.errorFormat === 'simplejwt') return drfError(err, request, reply)
  const oauth = request.routeOptions.config.errorFormat === 'oauth'
  if (err instanceof OAuthError) {
    // Off /oauth (the back-off of a password change, the hashing queue's 503) it is a refused request like any problem's.
    if (oauth) request.log[refusalLevel(err.status)]({ error: err.error, detail: err.detail }, 'oauth error')
    else request.log[refusalLevel(err.status)]({ status: err.status, reason: err.description, detail: err.detail }, 'request refused')
    if (err.retryAfter !== undefined) void reply.header('retry-after', String(err.retryAfter))
    if (err.challenge !== undefined) void reply.header('www-authenticate', err.challenge)
    // The hashing queue throws OAuthError wherever it runs; off /oauth that is still problem+json.
    return oauth
      ? oauthError(reply, err.status, err.error, err.description)
      : problem(reply, request, err.status, statusTitle(err.status), err.description)
  }
  if (err instanceof ProblemError) {
    request.log.info({ status: err.status, reason: problemReason(err), detail: err.detail }, 'request refused')
    if (err instanceof InvalidTokenError) void reply.header('www-authenticate', 'Bearer error="invalid_token"')
    if (err.retryAfter !== undefined) void reply.header('retry-after', String(err.retryAfter))
    return problem(reply, request, err.status, err.title, err.publicDetail, err.type)
  }
  if (rateLimited(err)) {
    request.log.info({ status: 429, reason: RATE_LIMIT_REASON }, 'request refused')
    return oauth
      ? oauthError(reply, 429, 'temporarily_unavailable', 'too many requests; retry later')
      : problem(reply, request, 429, 'Too Many Requests', 'too many requests; retry later')
  }
  const mistake = clientMistake(err, request.body, isJsonRequest(request))
  if (mistake !== undefined) {
    // RFC 6749 §5.2 has no 415: an OAuth route says 400 for it, and logs what it sent.
    const status = oauth && mistake.status !== 413 ? 400 : mistake.status
    request.log.info({ status, detail: mistake.detail }, 'bad request')
    return oauth
      ? oauthError(reply, status, 'invalid_request', mistake.detail)
      : problem(reply, request, status, statusTitle(status), mistake.detail)
  }
  request.log.error({ err }, 'unexpected error')
  return oauth
    ? oauthError(reply, 500, 'server_error', `an unexpected error occurred (request id ${request.id})`)
    : problem(reply, request, 500, 'Internal Server Error', `an unexpected error occurred (request id ${request.id})`)
}

/** The methods a 405's Allow can name: every method a Tessera route is served with. */
const ROUTED_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const

/**
 * The answer to a request no route serves. On a path that some route serves
 * with other methods it is a 405 whose Allow names them (RFC 9110 §15.5.6:
 * an origin server must send Allow with a 405), in that path's own error
 * format, as Django REST framework answers on SimpleJWT's paths; on any
 * other path a 404 problem. `errorFormatOf` gives a served path's format.
 */
export function unroutedHandler (errorFormatOf: (path: string) => ErrorFormat | undefined): (this: App, request: FastifyRequest, reply: FastifyReply) => FastifyReply {
  return function answerUnrouted (request, reply) {
    const path = targetPath(request.url)
    const allowed = ROUTED_METHODS.filter((method) => this.findRoute({ method, url: request.url }) !== null)
    if (allowed.length === 0) return problem(reply, request, 404, 'Not Found', `no route for ${request.method} ${path}`)
    void reply.header('allow', allowed.join(', '))
    const format = errorFormatOf(path)
    if (format === 'simplejwt') return reply.status(405).send({ detail: `Method "${request.method}" not allowed.` })
    const detail = `${path} is served with ${allowed.join(', ')}, not ${request.method}`
    return format === 'oauth'
      ? oauthError(reply, 405, 'invalid_request', detail)
      : problem(reply, request, 405, statusTitle(405), detail)
  }
}

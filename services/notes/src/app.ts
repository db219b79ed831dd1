/**
 * The notes API: a user's own notes, behind access tokens that are verified
 * offline against the issuer's JWKS. This file is the integrator example: the
 * whole of token verification is the `fastifyJwt` registration and the
 * `authenticate` hook below; `requireScope` adds the scope each route needs
 * (notes:read to list, notes:write to add or delete).
 * @module
 */
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import fastifyJwt, { type TokenOrHeader } from '@fastify/jwt'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type RawReplyDefaultExpression, type RawRequestDefaultExpression, type RawServerDefault } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { databaseTakesWrites, isDatabaseOutOfReach, type Db } from './db.js'
import { JwksUnavailableError, type KeySource } from './keys.js'
import { givenRequestId, requestIdSource, type RequestIdOf } from './request-id.js'

export interface Deps { db: Db, keys: KeySource, logger: Logger }
export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, Logger, TypeBoxTypeProvider>

class Unauthorized extends Error {}

/**
 * Two Authorization headers: Node keeps the first and drops the rest, but the
 * header is not a list (RFC 9110 §11.6.2), and a proxy in front that reads the
 * last would see another identity. Refused as Tessera refuses it (RFC 6750 §3.1 invalid_request).
 */
class RepeatedAuthorization extends Error {}

/** A valid token that lacks the scope the route needs (RFC 6750 §3.1). */
class InsufficientScope extends Error {
  readonly scope: string

  constructor (scope: string) {
    super(`needs ${scope}`)
    this.scope = scope
  }
}

const READ = 'notes:read'
const WRITE = 'notes:write'

declare module 'fastify' {
  interface FastifyRequest { userId: string }
}

/** Postgres refuses NUL in text: a 400 at the edge, not a 500 from the insert. */
const NO_NUL = '^[^\\u0000]*$'
/**
 * A uuid as Postgres's uuid type reads it, in either case: not Ajv's "uuid"
 * format, which takes an RFC 4122 URN (urn:uuid:…) too, and the delete then
 * failed in Postgres with a 500.
 */
const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
/** Each pattern's rule in words: Ajv's own quote the regex. */
const PATTERN_RULES = new Map([[NO_NUL, 'must not contain a NUL character'], [UUID, 'must be a UUID']])

/** A schema's refusal as the 400's detail: Ajv's words, but a pattern's rule in words. */
function validationDetail (err: FastifyError): string {
  const first = err.validation?.[0]
  const rule = first?.keyword === 'pattern' ? PATTERN_RULES.get(String(first.params.pattern)) : undefined
  return rule === undefined ? err.message : `${err.validationContext ?? 'request'}${first?.instancePath ?? ''} ${rule}`
}
const Note = Type.Object({ id: Type.String(), text: Type.String(), created_at: Type.String() })

/** RFC 9110's reason phrases, which Node's table predates (it still says "Payload Too Large"), as Tessera answers them. */
function titleOf (status: number): string {
  return status === 413 ? 'Content Too Large' : STATUS_CODES[status] ?? 'Bad Request'
}

/**
 * The path a request names, without its query string: the target as sent in
 * origin-form (`/notes`), or, in the absolute-form a server must accept too
 * (RFC 9112 §3.2.2, `GET http://host/notes`, which the router serves as
 * `/notes`), what follows its authority. Never the authority itself: it may
 * carry a userinfo (`user:password@`), which no log line or answer repeats.
 * The asterisk-form (`OPTIONS *`) is its own path, as Tessera's targetPath
 * has it; any other target (another scheme) names no path: ''.
 */
function pathOf (request: FastifyRequest): string {
  const target = request.url
  let path = target
  if (!target.startsWith('/') && target !== '*') {
    const authority = /^https?:\/\/[^/?#]*/i.exec(target)
    const rest = authority === null ? '' : target.slice(authority[0].length)
    path = authority === null ? '' : rest.startsWith('/') ? rest : `/${rest}`
  }
  return path.split('?')[0] ?? ''
}

/**
 * RFC 9457, with the request id that finds the request's log lines (Tessera's
 * problem bodies carry both). No `instance` for a target that names no path:
 * an empty one is a reference to the problem document itself.
 */
function problem (reply: FastifyReply, status: number, title: string, detail: string): FastifyReply {
  const path = pathOf(reply.request)
  return reply.status(status).type('application/problem+json')
    .send({ type: 'about:blank', title, status, detail, ...(path === '' ? {} : { instance: path }), request_id: reply.request.id })
}

/**
 * A JWS or JWE in the path, put there by mistake (`DELETE /notes/<token>`):
 * every JOSE header is base64url JSON, so each starts `eyJ`, then a dot.
 */
const TOKEN_IN_PATH = /eyJ[A-Za-z0-9_-]{8,}\./

/** The path as logged: up to a token in it (`/notes/[token]`), as the gateway's access log writes it; decoded to look, so `%65yJ…` hides none. */
function loggedPath (request: FastifyRequest): string {
  const path = pathOf(request)
  let decoded = path
  try { decoded = decodeURIComponent(path) } catch {} // malformed: the router refuses it; look at it as it came
  const at = decoded.search(TOKEN_IN_PATH)
  return at === -1 ? path : `${decoded.slice(0, at)}[token]`
}

/**
 * The security headers every answer carries, for a client that reaches notes
 * directly; behind the gateway, its own nosniff and Referrer-Policy replace
 * these (proxy_hide_header), so each is sent once. Those of Tessera's
 * (helmet's, security-headers.ts) that matter for a JSON API, with Tessera's
 * values: a browser never sniffs an answer into a script or a page, no
 * Referer leaves with a link followed from one, and no other origin frames
 * one. Not Tessera's HSTS (the gateway's to send, over TLS: a browser ignores
 * it over notes' plain HTTP), nor its document-only headers (COOP,
 * Origin-Agent-Cluster, the legacy IE and Flash ones); no CSP, as Tessera
 * sends none.
 */
const SECURITY_HEADERS = Object.freeze({ 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'SAMEORIGIN' })

/** What every answer carries: the security headers and the request's id, the one in its problem body and its log lines. */
function identify (request: FastifyRequest, reply: FastifyReply): void {
  void reply.headers(SECURITY_HEADERS).header('x-request-id', request.id)
}

/** The one line each request is logged with, its path alone. */
function logRequest (request: FastifyRequest, reply: FastifyReply): void {
  request.log.info({ method: request.method, path: loggedPath(request), status: reply.statusCode, duration_ms: Math.round(reply.elapsedTime * 100) / 100 }, 'request')
}

/**
 * The router's refusals, before any route or hook (a malformed
 * percent-encoding, a path segment over its limit): the contract's shape,
 * without the path, since the path is what was wrong; logged here, as no
 * onResponse hook runs for them.
 */
function answerFrameworkError (err: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH'
  const status = tooLong ? 414 : 400
  reply.raw.once('finish', () => { logRequest(request, reply) })
  // The onRequest hook that sets these does not run for what the router refuses.
  identify(request, reply)
  return reply.status(status).type('application/problem+json').send({
    type: 'about:blank', title: titleOf(status), status, detail: tooLong ? 'a path segment is longer than allowed' : 'the path is not a valid URL', request_id: request.id
  })
}

/** What Node's HTTP parser refuses before there is a request: its status, title and detail. */
function unparsedRequest (code: string | undefined): [status: number, title: string, detail: string] {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return [408, 'Request Timeout', 'the request did not arrive in time']
  if (code === 'HPE_HEADER_OVERFLOW') return [431, 'Request Header Fields Too Large', 'the request\'s headers are larger than the server accepts']
  return [400, 'Bad Request', 'the request is not valid HTTP']
}

/**
 * A request Node's parser refused (headers over its limit, a malformed
 * request line, a body too slow) has no route and no reply: it is answered
 * on the socket, as Fastify's own handler does, but as problem+json rather
 * than Fastify's error shape, as Tessera answers it, with a request id
 * (`requestIdOf`, the gateway's when it can be read and the peer is trusted)
 * in X-Request-Id, the body and the log line, and the security headers.
 */
function unparsedRequestHandler (requestIdOf: RequestIdOf): (this: FastifyInstance, err: NodeJS.ErrnoException & { rawPacket?: unknown }, socket: Duplex & { remoteAddress?: string }) => void {
  return function answerUnparsedRequest (err, socket) {
    // A reset connection has nobody left to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const [status, title, detail] = unparsedRequest(err.code)
    const id = requestIdOf(givenRequestId(err.rawPacket), socket.remoteAddress)
    this.log.info({ reqId: id, status, code: err.code }, 'unparsed request')
    const body = JSON.stringify({ type: 'about:blank', title, status, detail, request_id: id })
    const headers = Object.entries(SECURITY_HEADERS).map(([name, value]) => `${name}: ${value}\r\n`).join('')
    if (socket.writable) {
      socket.write(`HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${id}\r\n${headers}Connection: close\r\n\r\n${body}`)
    }
    socket.destroy(err)
  }
}

/**
 * RFC 3986's uri-host [":" port]: an IP literal in brackets (IPv6, or
 * IPvFuture), or a reg-name (an IPv4 address is one too), which may be empty.
 */
const HOST = /^(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+)\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/

/**
 * Why a request's Host is refused, or undefined. RFC 9112 §3.2: a server
 * must answer 400 to an HTTP/1.1 request without one, to any request with
 * more than one Host line (Node keeps the first in request.headers; rawHeaders
 * has them all) and to one whose value is not a host.
 */
function hostRefusal (request: FastifyRequest): string | undefined {
  const host = request.headers.host
  if (host === undefined) {
    return request.raw.httpVersionMajor === 1 && request.raw.httpVersionMinor === 1 ? 'an HTTP/1.1 request must carry a Host header' : undefined
  }
  if (!HOST.test(host)) return 'the Host header is not a host name or address with an optional port'
  return repeatsHeader(request, 'host') ? 'the request has more than one Host header' : undefined
}

/** Whether the request carries header `name` (lower case) on more than one line: request.headers keeps only the first of some. */
function repeatsHeader (request: FastifyRequest, name: string): boolean {
  const raw = request.raw.rawHeaders
  let lines = 0
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() === name && ++lines > 1) return true
  }
  return false
}

/** Every method a route here is served with, in the order a 405's Allow names them. */
const ROUTED_METHODS = ['GET', 'HEAD', 'POST', 'DELETE'] as const

/** The largest request body read, in bytes, as Tessera's. */
const BODY_LIMIT = 16 * 1024

/**
 * Fastify's refusals of a body it could not read, in words that say what to
 * fix, as Tessera's do: "the request is malformed" said a body too large was
 * malformed. Fastify refuses a `__proto__` member (or `constructor` holding
 * `prototype`) with the error of a syntax error, so the one detail names both.
 */
const BODY_REFUSALS = new Map([
  ['FST_ERR_CTP_BODY_TOO_LARGE', `the body is larger than ${BODY_LIMIT} bytes`],
  ['FST_ERR_CTP_EMPTY_JSON_BODY', 'the JSON body is empty'],
  ['FST_ERR_CTP_INVALID_JSON_BODY', 'the body is not valid JSON, or names __proto__ or constructor.prototype, which is refused']
])

/**
 * A body notes cannot read as it was sent, refused 415 as Tessera refuses it
 * (RFC 9110 §15.5.16) rather than stored altered: bytes that are not UTF-8
 * (RFC 8259 §8.1; Fastify's parser decoded them to U+FFFD and the note was
 * stored without them), a charset other than UTF-8 (read as UTF-8 all the
 * same), a Content-Encoding (notes decompresses nothing: a compressed body
 * was a 400 about its JSON, an uncompressed one labelled gzip was stored), or
 * two Content-Type lines (Node reads the first; a filter in front that reads
 * the last would parse the same bytes as another body).
 */
class UnreadableBody extends Error {
  readonly statusCode = 415
  readonly code = 'NOTES_UNREADABLE_BODY'
}

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i
const UTF8_NAME = /^utf-?8$/i
const UTF8 = new TextDecoder('utf-8', { fatal: true })

function unreadableBody (request: FastifyRequest): UnreadableBody | undefined {
  if (repeatsHeader(request, 'content-type')) return new UnreadableBody('the request has more than one Content-Type header')
  const encoding = request.headers['content-encoding']?.trim()
  if (encoding !== undefined && encoding !== '' && encoding.toLowerCase() !== 'identity') return new UnreadableBody('the body has a Content-Encoding; send it uncompressed, without one')
  const charset = CHARSET.exec(request.headers['content-type'] ?? '')?.[1]
  if (charset !== undefined && !UTF8_NAME.test(charset)) return new UnreadableBody('the body\'s charset is not UTF-8; send it as UTF-8')
  return undefined
}

/** The longest a request may take to arrive, body included (ms). */
const ANSWER_TIMEOUT_MS = 30_000

/** How many notes GET /notes answers at most, the newest; past it the answer says `truncated`. */
const LIST_CAP = 500

/** RFC 9068 §4: `at+jwt`, or the same media type written in full. */
const AT_JWT = new Set(['at+jwt', 'application/at+jwt'])

/** How long a client or orchestrator is told to wait before asking /readyz again, as Tessera tells it. */
const NOT_READY_RETRY_AFTER_S = 5

export async function buildApp (config: Config, deps: Deps): Promise<App> {
  const requestIdOf = requestIdSource(config.trustProxy)
  const app: App = Fastify({
    loggerInstance: deps.logger,
    // The gateway's X-Request-Id from a NOTES_TRUST_PROXY peer; otherwise a
    // UUID, unique across restarts and instances, unlike Fastify's per-process counter.
    genReqId: (req) => requestIdOf(req.headers['x-request-id'], req.socket.remoteAddress),
    // One line per request, written below with the path alone: Fastify's own
    // lines log the URL with its query string, where a client may have put a token.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    return503OnClosing: true,
    // A request, body included, is answered or dropped within this, as
    // Tessera's are: without it a client trickling its body held its
    // connection as long as bytes kept coming.
    connectionTimeout: ANSWER_TIMEOUT_MS,
    requestTimeout: ANSWER_TIMEOUT_MS,
    // No coercion, as Tessera's: Fastify's Ajv stored a text of 1, true or ["b"] as "1", "true" or "b".
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    frameworkErrors: answerFrameworkError,
    clientErrorHandler: unparsedRequestHandler(requestIdOf),
    // Node refuses an HTTP/1.1 request without a Host itself, a 400 with no
    // body and no log line; the onRequest hook below refuses it as problem+json.
    http: { requireHostHeader: false }
  }).withTypeProvider<TypeBoxTypeProvider>()
  // Set after the server is made, requestTimeout bounds only the headers unless headersTimeout is no longer than it.
  app.server.headersTimeout = ANSWER_TIMEOUT_MS
  // An Expect other than 100-continue: Node answers 417 itself, with no body
  // and no log line, unless someone listens. RFC 9110 §10.1.1 lets a server
  // ignore it, as the gateway does: the request is served as if it were absent.
  app.server.on('checkExpectation', (req, res) => app.server.emit('request', req, res))
  app.addHook('onRequest', function identifyAnswer (request, reply, done) {
    identify(request, reply)
    done()
  })
  app.addHook('onRequest', function requireHost (request, reply, done) {
    const refused = hostRefusal(request)
    if (refused !== undefined) {
      void problem(reply, 400, 'Bad Request', refused)
      return
    }
    done()
  })

  // While closing, answers close their connection: Node's server.close() ends
  // only the keep-alive connections idle when it starts, so one whose request
  // was in flight then held shutdown open until the grace period killed the
  // process. Requests that arrive later get Fastify's 503 (return503OnClosing).
  let draining = false
  app.addHook('preClose', async () => { draining = true })
  app.addHook('onSend', async (_request, reply, payload) => {
    if (draining) void reply.header('connection', 'close')
    return payload
  })

  app.addHook('onResponse', async (request, reply) => { logRequest(request, reply) })

  await app.register(fastifyJwt, {
    // Only what Tessera mints for us: an RS256 access token (typ at+jwt) with a
    // kid. A refresh token fails here on typ, and again on aud.
    secret: async (_request: FastifyRequest, token: TokenOrHeader) => {
      const header = 'header' in token ? token.header : token
      if (header.alg !== 'RS256' || typeof header.kid !== 'string' || typeof header.typ !== 'string' || !AT_JWT.has(header.typ.toLowerCase())) {
        throw new Unauthorized('not an RS256 at+jwt with a kid')
      }
      const iat = 'payload' in token && typeof token.payload === 'object' && token.payload !== null ? (token.payload as { iat?: unknown }).iat : undefined
      return await deps.keys(header.kid, header.alg, typeof iat === 'number' ? iat : undefined)
    },
    decode: { complete: true },
    verify: {
      algorithms: ['RS256'],
      allowedIss: config.issuer,
      allowedAud: config.audience,
      // fast-jwt checks allowedIss and allowedAud only on a token that has the claim: required, so one without is refused.
      requiredClaims: ['exp', 'iat', 'sub', 'iss', 'aud'],
      clockTolerance: config.clockSkewMs
    }
  })

  async function authenticate (request: FastifyRequest): Promise<{ scope?: unknown }> {
    if (request.headers.authorization !== undefined && repeatsHeader(request, 'authorization')) throw new RepeatedAuthorization()
    try {
      const claims = await request.jwtVerify<{ sub: string, scope?: unknown, iat?: unknown, exp?: unknown, nbf?: unknown }>()
      // fast-jwt takes any number as a date, and an exp of 1e400 parses as Infinity: a token that never expires. Tessera's own readers refuse them too.
      if (![claims.exp, claims.iat, ...(claims.nbf === undefined ? [] : [claims.nbf])].every(Number.isFinite)) throw new Error('exp, iat or nbf is not a finite number')
      // fast-jwt checks iat only against a maxAge: a token issued in the future (past the skew) is refused here.
      if (typeof claims.iat !== 'number' || claims.iat * 1000 > Date.now() + config.clockSkewMs) throw new Error('iat is in the future')
      // fast-jwt checks only that sub is present, and the notes' owner is text: a NUL or a list was a 500 from Postgres, a number another spelling of a string's owner.
      if (typeof claims.sub !== 'string' || claims.sub === '' || claims.sub.includes('\u0000')) throw new Error('sub is not a non-empty string without NUL')
      request.userId = claims.sub
      return claims
    } catch (err) {
      if (err instanceof JwksUnavailableError) {
        // Once per cooldown a fetch failed (logged with why); in between, the answer comes from memory.
        if (err.cause === undefined) request.log.info({ reason: err.message }, 'token not checked')
        else request.log.warn({ err: err.cause }, 'token not checked: the JWKS could not be fetched')
        throw err
      }
      request.log.info({ reason: (err as Error).message }, 'token refused')
      throw new Unauthorized()
    }
  }

  /** onRequest hook: a verified token whose `scope` holds the one this route needs. */
  const requireScope = (needed: string) => async (request: FastifyRequest): Promise<void> => {
    const { scope } = await authenticate(request)
    if (typeof scope !== 'string' || !scope.split(' ').includes(needed)) throw new InsufficientScope(needed)
  }

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof Unauthorized) {
      return problem(reply.header('www-authenticate', 'Bearer error="invalid_token"'), 401, 'Unauthorized', 'the access token is missing, invalid or expired')
    }
    if (err instanceof RepeatedAuthorization) {
      request.log.info({ reason: 'more than one Authorization header' }, 'token refused')
      return problem(reply.header('www-authenticate', 'Bearer error="invalid_request"'), 400, 'Bad Request', 'the request has more than one Authorization header')
    }
    if (err instanceof InsufficientScope) {
      return problem(reply.header('www-authenticate', `Bearer error="insufficient_scope", scope="${err.scope}"`), 403, 'Forbidden', `the access token lacks the scope ${err.scope}`)
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return problem(reply, 415, 'Unsupported Media Type', 'send the body as application/json')
    if (err.validation !== undefined || (err.statusCode !== undefined && err.statusCode < 500)) {
      const status = err.statusCode ?? 400
      return problem(reply, status, titleOf(status), err.validation !== undefined ? validationDetail(err) : err instanceof UnreadableBody ? err.message : BODY_REFUSALS.get(err.code) ?? 'the request is malformed')
    }
    if (err instanceof JwksUnavailableError) {
      return problem(reply.header('retry-after', String(err.retryAfterSeconds)), 503, 'Service Unavailable', err.publicDetail)
    }
    if (isDatabaseOutOfReach(err)) {
      // The code and message say which outage; a stack says nothing more, and an outage logs one line per request (as Tessera's do).
      request.log.warn({ db_error: { code: err.code, message: err.message } }, 'database unavailable')
      return problem(reply.header('retry-after', '1'), 503, 'Service Unavailable', 'the database is out of reach; retry shortly')
    }
    request.log.error({ err }, 'unexpected error')
    return problem(reply, 500, 'Internal Server Error', 'an unexpected error occurred')
  })
  // A path the router serves with other methods is a 405 naming them (RFC 9110 §15.5.6), as Tessera's is.
  app.setNotFoundHandler((request, reply) => {
    const path = pathOf(request)
    const allowed = ROUTED_METHODS.filter((method) => app.findRoute({ method, url: request.url }) !== null)
    if (allowed.length === 0) return problem(reply, 404, 'Not Found', `${request.method} ${path} does not exist`)
    const allow = allowed.join(', ')
    return problem(reply.header('allow', allow), 405, 'Method Not Allowed', `${path} is served with ${allow}, not ${request.method}`)
  })

  // JSON bodies only, as the routes' schemas say: anything else is a 415, not a schema's 400.
  app.removeContentTypeParser('text/plain')
  // Fastify's own JSON parser (empty bodies, prototype poisoning), handed the body's text only once it is known to be UTF-8.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string
    try {
      text = UTF8.decode(body as Buffer)
    } catch {
      done(new UnreadableBody('the body is not UTF-8; send it as UTF-8'))
      return
    }
    parseJson(request, text, done)
  })

  // Liveness: the process answers, whatever its database does.
  app.get('/healthz', async () => ({ status: 'ok' }))

  /** /readyz's 503, and its log line with why, as Tessera's: `cause` is logged, never sent. */
  const notReady = (request: FastifyRequest, reply: FastifyReply, reason: string, cause?: string): FastifyReply => {
    request.log.info({ status: 503, reason, ...(cause === undefined ? {} : { detail: cause }) }, 'request refused')
    return problem(reply.header('retry-after', String(NOT_READY_RETRY_AFTER_S)), 503, 'Service Unavailable', reason)
  }
  // Readiness, as Tessera's: the database answers and takes writes. On a
  // standby (a failover that left DATABASE_URL on the old primary) or a
  // read-only database every POST and DELETE is a 503, so notes is not ready.
  // The JWKS is not asked: under compose the gateway, through which notes
  // fetches it, waits for notes to be ready, and an unreachable JWKS is
  // already each request's 503 with Retry-After.
  app.get('/readyz', async (request, reply) => {
    let takesWrites: boolean
    try {
      takesWrites = await databaseTakesWrites(deps.db)
    } catch (err) {
      return notReady(request, reply, 'the database is not reachable', err instanceof Error ? err.message : String(err))
    }
    return takesWrites ? { status: 'ready' } : notReady(request, reply, 'the database takes no writes (a standby, or read-only)')
  })

  app.get('/notes', {
    onRequest: requireScope(READ),
    schema: { response: { 200: Type.Object({ notes: Type.Array(Note), truncated: Type.Boolean() }) } }
  }, async (request) => {
    // One row past the cap tells a full list from a cut one: without
    // `truncated` a client could not tell it had not got them all.
    const rows = await deps.db.selectFrom('notes.notes').select(['id', 'text', 'created_at'])
      .where('owner', '=', request.userId).orderBy('created_at', 'desc').limit(LIST_CAP + 1).execute()
    return {
      notes: rows.slice(0, LIST_CAP).map((row) => ({ ...row, created_at: row.created_at.toISOString() })),
      truncated: rows.length > LIST_CAP
    }
  })

  app.post('/notes', {
    onRequest: requireScope(WRITE),
    preParsing: (request, _reply, payload, done) => {
      const refused = unreadableBody(request)
      if (refused !== undefined) done(refused)
      else done(null, payload)
    },
    schema: { body: Type.Object({ text: Type.String({ minLength: 1, maxLength: 4000, pattern: NO_NUL }) }, { additionalProperties: false }), response: { 201: Note } }
  }, async (request, reply) => {
    const row = await deps.db.insertInto('notes.notes').values({ owner: request.userId, text: request.body.text })
      .returning(['id', 'text', 'created_at']).executeTakeFirstOrThrow()
    return await reply.status(201).send({ ...row, created_at: row.created_at.toISOString() })
  })

  app.delete('/notes/:id', {
    onRequest: requireScope(WRITE),
    schema: { params: Type.Object({ id: Type.String({ pattern: UUID }) }) }
  }, async (request, reply) => {
    const { numDeletedRows } = await deps.db.deleteFrom('notes.notes')
      .where('id', '=', request.params.id).where('owner', '=', request.userId).executeTakeFirst()
    return numDeletedRows > 0n ? await reply.status(204).send() : problem(reply, 404, 'Not Found', 'no such note')
  })

  return app
}

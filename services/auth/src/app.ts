/**
 * buildApp(config, deps): the whole HTTP surface, with every Fastify option
 * set here so tests and production validate alike. Routes are registered
 * explicitly; the one error handler (http/errors.ts) maps domain errors to
 * RFC 6749 §5.2 (routes marked `errorFormat: 'oauth'`) or RFC 9457
 * problem+json.
 * @module
 */
import { performance } from 'node:perf_hooks'
import proxyAddr from '@fastify/proxy-addr'
import Fastify, { LogController, type FastifyReply, type FastifyRequest, type onSendHookHandler, type RouteOptions } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Logger } from 'pino'
import { ANSWER_TIMEOUT_MS, type Config } from './config.js'
import type { App, Deps } from './http/app-types.js'
import { unparsedRequestHandler, answerError, answerFrameworkError, unreadablePathFormat, unroutedHandler, type ErrorFormat } from './http/errors.js'
import { firstRepeatedMember, isJson, PrototypeMemberError, RepeatedJsonMemberError, fromUtf8 } from './http/json-body.js'
import { BODY_LIMIT } from './http/limits.js'
import { registerHealthRoutes } from './routes/health.js'
import { registerWellKnownRoutes } from './routes/well-known.js'
import { registerTokenRoutes } from './routes/oauth/token.js'
import { registerRevokeRoutes } from './routes/oauth/revoke.js'
import { registerUserRoutes } from './routes/v1/users.js'
import { registerAccountRoutes } from './routes/v1/account.js'
import { registerAccessTokenAuth } from './routes/v1/access-token-auth.js'
import { registerMetricsRoutes } from './routes/metrics.js'
import { registerSimpleJwtRoutes, simplejwtPaths } from './routes/simplejwt.js'
import { registerOpenApi } from './routes/openapi.js'
import { argon2Shedding } from './routes/shedding.js'
import { SECURITY_HEADERS } from './security-headers.js'
import { requestIds } from './request-id.js'
import { lazyChildLogger } from './logging.js'
import { refuseRepeatedContentType, refuseUnreadableBody } from './http/body-encoding.js'
import { formParser } from './http/form-body.js'
import { addressOrPeer, clientAddress, rateLimitKey } from './http/client-address.js'
import { answerBeforeRouting } from './http/answer-before-routing.js'
import { hostCheck } from './http/host.js'
import { targetPath } from './http/target-path.js'
import { pressureSampler } from './util/pressure.js'
import { watchDescriptors } from './util/descriptor-watch.js'
import { OAuthError } from './errors.js'

declare module 'fastify' {
  /** A route's policy, declared on its own options and applied by buildApp's onRoute hook. */
  interface FastifyContextConfig {
    /** OAuth endpoints answer errors as RFC 6749 §5.2 rather than problem+json. */
    errorFormat?: ErrorFormat
    /** A route a client can make expensive or abuse: each client IP gets one budget across all of them. */
    rateLimited?: boolean
    /** The route may run argon2, so it is shed first under pressure: on every request, or on a password grant only. */
    hashesPassword?: 'always' | 'password-grant'
    /** The route answers from memory in the tick it is routed, so it is never in flight when draining starts: no drain hook. */
    answersAtOnce?: boolean
  }
  interface FastifyInstance {
    /** Whether the last pressure sample (event-loop delay, heap) is over its ceiling (util/pressure.ts). */
    isUnderPressure: () => boolean
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
/** The methods whose routes read a body. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH'])

/** Any route hook: the rate limiter's and ours have different Fastify types. */
type RouteHook = (...args: never[]) => unknown

/** Adds a hook to one route, ahead of the route's own hooks of that kind. */
function prependRouteHook (routeOptions: RouteOptions, name: 'onRequest' | 'preParsing' | 'preValidation' | 'preHandler' | 'onSend', hook: RouteHook): void {
  const own: unknown = routeOptions[name]
  routeOptions[name] = [hook, ...(own === undefined ? [] : Array.isArray(own) ? own : [own])] as never
}

/** What every answer carries: the security headers and the request's id. */
function identify (request: FastifyRequest, reply: FastifyReply): void {
  void reply.headers(SECURITY_HEADERS).header('x-request-id', request.id)
}

const PRESSURE_SAMPLE_MS = 250
/** How often a worker checks that it can still open a file (util/descriptor-watch.ts). */
const DESCRIPTOR_CHECK_MS = 1000

export async function buildApp (config: Config, deps: Deps): Promise<App> {
  // A request id is the gateway's to give: from anyone else it could forge log correlation.
  const trustedPeer = config.trustProxy.length > 0 ? proxyAddr.compile(config.trustProxy) : () => false
  const nextRequestId = requestIds()
  const requestIdOf = (given: string | string[] | undefined, peer: string | undefined): string =>
    typeof given === 'string' && REQUEST_ID.test(given) && peer !== undefined && trustedPeer(peer, 0) ? given : nextRequestId()
  // Each route's error format, by path: filled in as routes are added (the onRoute hook below).
  const errorFormats = new Map<string, ErrorFormat>()
  // The histogram's method label: a method some route answers (the onRoute
  // hook below adds them), HEAD and OPTIONS, or `other`. Node parses ~35
  // methods (PROPFIND, MKCOL, …), and each would otherwise be a series of its
  // own under route="unmatched" that any client could add; the log line keeps the method as sent.
  const labelledMethods = new Set(['HEAD', 'OPTIONS'])
  /** An answer's histogram sample; `elapsed` in ms. */
  const countAnswer = (method: string, route: string, status: number, elapsed: number): void => {
    deps.metrics.observeRequest(labelledMethods.has(method) ? method : 'other', route, status, elapsed / 1000)
  }
  const requestLine = (method: string, route: string, status: number, elapsed: number, ip: string): Record<string, unknown> =>
    ({ method, route, status, duration_ms: Math.round(elapsed * 100) / 100, ip })
  /** The request's one log line and its histogram sample; `elapsed` in ms, where Fastify did not time the request. */
  const recordRequest = (request: FastifyRequest, reply: FastifyReply, elapsed = reply.elapsedTime): void => {
    const route = request.routeOptions.url ?? 'unmatched'
    countAnswer(request.method, route, reply.statusCode, elapsed)
    if (deps.logger.isLevelEnabled('info')) {
      request.log.info(requestLine(request.method, route, reply.statusCode, elapsed, clientAddress(request)), 'request')
    }
  }
  const app: App = Fastify({
    loggerInstance: deps.logger,
    // One line per request, written by the onResponse hook below, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (logger, bindings, options) => lazyChildLogger(logger as Logger, bindings, options),
    genReqId: (req) => requestIdOf(req.headers['x-request-id'], req.socket.remoteAddress),
    // The router answers these before any route or hook, and Fastify does not
    // time them: the request is timed and recorded here instead, once its
    // answer is sent or its client gone.
    frameworkErrors: (err, request, reply) => {
      const started = performance.now()
      let recorded = false
      const record = (): void => {
        if (recorded) return
        recorded = true
        recordRequest(request, reply, performance.now() - started)
      }
      reply.raw.once('finish', record).once('close', record)
      // The onRequest hook that sets these does not run for what the router refuses.
      identify(request, reply)
      return answerFrameworkError(err, request, reply, unreadablePathFormat(errorFormats, targetPath(request.url)))
    },
    clientErrorHandler: unparsedRequestHandler((path) => errorFormats.get(path), requestIdOf),
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    bodyLimit: BODY_LIMIT,
    return503OnClosing: true,
    connectionTimeout: ANSWER_TIMEOUT_MS,
    requestTimeout: ANSWER_TIMEOUT_MS,
    // Past the gateway's upstream keepalive_timeout (Nginx's default, 60 s): the gateway closes an idle
    // connection first, so it never sends a login down one this end has just closed (a 502 it would not retry).
    keepAliveTimeout: 65_000,
    // Node refuses an HTTP/1.1 request without a Host itself, a 400 with no
    // body, no request id and no log line; the onRequest hook below refuses
    // it instead, in the route's own format (RFC 9112 §3.2 still holds), and
    // two Host lines or a value that is not a host, which Node lets through.
    http: { requireHostHeader: false },
    routerOptions: { ignoreTrailingSlash: false },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } }
  }).withTypeProvider<TypeBoxTypeProvider>()
  // Fastify sets requestTimeout on the server it has made, where Node then
  // times only the headers (headersTimeout, 60 s by default) and no longer
  // the body: a client trickling its body a byte at a time held its
  // connection for hours. With headersTimeout no longer than it, the whole
  // request is bounded again.
  app.server.headersTimeout = ANSWER_TIMEOUT_MS
  // An Expect other than 100-continue: Node answers 417 itself, with no body,
  // no request id and no log line, unless someone listens for it. RFC 9110
  // §10.1.1 lets a server ignore an expectation it does not know (it MAY
  // answer 417), and the gateway does: the request is served as if the
  // header were absent, the same answer with the gateway in front or not.
  app.server.on('checkExpectation', (req, res) => app.server.emit('request', req, res))

  // Every hook below runs only where it is needed: a global hook is paid by
  // the JWKS and /v1/me too (docs/performance-history.md, "What was removed from the hot routes, and why").
  // The security headers are computed once (security-headers.ts) and set with
  // the request id in one synchronous hook, instead of helmet's middleware
  // chain built per request.
  // The Host check rides on this hook rather than one of its own, for the same reason.
  const hostRefusal = hostCheck()
  app.addHook('onRequest', function securityHeaders (request, reply, done) {
    identify(request, reply)
    const refused = hostRefusal(request.raw)
    done(refused === undefined ? undefined : new OAuthError('invalid_request', refused))
  })
  // While draining, answers close their connection so that the in-flight
  // requests' keep-alive sockets do not hold shutdown open. Only requests
  // already routed when closing starts need this: Fastify answers every later
  // one itself, 503 with Connection: close (return503OnClosing), so a route
  // that answers at once (the JWKS, a 404) never needs it. That 503 is never
  // sent (Node drops what was pipelined behind an answer that closes); what it
  // buys is that the request does not run: a refresh routed instead would
  // spend its token with its answer dropped (decisions.md, "draining").
  let draining = false
  app.addHook('preClose', async () => { draining = true })
  const closeWhileDraining: onSendHookHandler = function closeWhileDraining (_request, reply, payload, done) {
    if (draining) void reply.header('connection', 'close')
    done(null, payload)
  }
  // Synchronous: an async hook costs a promise per request, and this one never waits.
  app.addHook('onResponse', function logAndCount (request, reply, done) {
    recordRequest(request, reply)
    done()
  })

  // JSON and form bodies only: anything else is a 415 (invalid_request on OAuth routes).
  // A form's values exactly as sent, or a 400 (http/form-body.ts).
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, formParser())
  app.removeContentTypeParser('text/plain')
  // A member named twice is refused, as a repeated form parameter is (http/json-body.ts).
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, fromUtf8((request, body, done) => {
    parseJson(request, body, (err, parsed) => {
      if (err !== null) {
        done(isJson(body) ? new PrototypeMemberError() : err)
        return
      }
      const repeated = firstRepeatedMember(body)
      if (repeated === undefined) done(null, parsed)
      else done(new RepeatedJsonMemberError(repeated))
    })
  }))
  // The second line of per-IP limits: the gateway's limit_req is the first and
  // is shared by every instance; this one counts per instance (in the
  // primary's memory, one budget across its workers: cluster/rate-limit.ts),
  // and still holds if a client reaches an instance some other way. The client
  // is the gateway's X-Forwarded-For only when the peer is TESSERA_TRUST_PROXY,
  // and only if it is an address (http/client-address.ts); an IPv6 client
  // counts by its /64.
  // The plugin throws a statusCode 429 error, which answerError shapes.
  // Not global: one limiter (one store, so one budget per client across the
  // rate-limited routes) is attached to those routes alone below.
  await app.register(rateLimit, {
    global: false,
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    enableDraftSpec: true,
    keyGenerator: rateLimitKey,
    ...(deps.rateLimitStore === undefined ? {} : { store: deps.rateLimitStore }),
    onExceeded: (request) => { deps.metrics.rateLimited(request.routeOptions.url ?? 'unmatched') }
  })
  const limit = app.rateLimit()
  // Under pressure (event-loop delay, heap) only the argon2 routes are shed,
  // and only once the body says it is a password grant: /healthz, the JWKS and
  // refresh stay served, since they are what keeps everyone else logged in.
  const sampler = pressureSampler({ maxEventLoopDelayMs: config.maxEventLoopDelayMs, maxHeapBytes: config.maxHeapBytes, sampleMs: PRESSURE_SAMPLE_MS })
  app.addHook('onClose', async () => { sampler.stop() })
  app.decorate('isUnderPressure', sampler.isUnderPressure)
  // Out of descriptors, new connections are reset by libuv without a word to Node: say it here, once.
  const descriptors = watchDescriptors({
    everyMs: DESCRIPTOR_CHECK_MS,
    exhausted: (code) => {
      deps.logger.warn({ code }, code === 'EMFILE'
        ? 'out of file descriptors (this process\'s open files limit): new connections are reset until some close; raise the limit (docs/operators.md, "Open files and connections")'
        : 'the system\'s file table is full (ENFILE): new connections are reset until descriptors are freed')
    },
    recovered: () => { deps.logger.info('file descriptors available again: new connections are accepted') }
  })
  app.addHook('onClose', async () => { descriptors.stop() })
  // Start-up (schema compilation, JIT) blocks the loop in a way the first
  // samples would mistake for overload; judge only once serving has settled.
  let settledAt = Infinity
  app.addHook('onReady', async () => { settledAt = performance.now() + 4 * PRESSURE_SAMPLE_MS })
  const compat = config.simplejwtCompat ? simplejwtPaths(config) : undefined
  const shed = argon2Shedding({
    hasher: deps.hasher,
    metrics: deps.metrics,
    underPressure: () => performance.now() >= settledAt && app.isUnderPressure(),
    loginRoutes: new Set(['/oauth/token', ...(compat === undefined ? [] : [compat.login])])
  })
  // Each route declares its policy in its options' `config`; this applies it.
  app.addHook('onRoute', (routeOptions) => {
    const policy = routeOptions.config
    for (const method of [routeOptions.method].flat()) labelledMethods.add(method)
    if (policy?.errorFormat !== undefined) errorFormats.set(routeOptions.url, policy.errorFormat)
    if (policy?.answersAtOnce !== true) prependRouteHook(routeOptions, 'onSend', closeWhileDraining)
    if ([routeOptions.method].flat().some((method) => BODY_METHODS.has(method))) {
      prependRouteHook(routeOptions, 'preParsing', policy?.errorFormat === 'simplejwt' ? refuseRepeatedContentType : refuseUnreadableBody)
    }
    // On a route that hashes, the limiter waits for the body (shed first:
    // cheaper than its count) but still runs before validation, so a
    // malformed request spends budget too.
    if (policy?.hashesPassword !== undefined) {
      if (policy.rateLimited === true) prependRouteHook(routeOptions, 'preValidation', limit)
      prependRouteHook(routeOptions, 'preValidation', shed)
    } else if (policy?.rateLimited === true) {
      prependRouteHook(routeOptions, 'onRequest', limit)
    }
  })
  app.setErrorHandler(answerError)
  app.setNotFoundHandler(unroutedHandler((path) => errorFormats.get(path)))

  // Before every route: the generator learns routes as they are added.
  await registerOpenApi(app, config)
  registerAccessTokenAuth(app)
  registerHealthRoutes(app, deps)
  if (config.metricsPort === undefined) registerMetricsRoutes(app, deps)
  const jwks = registerWellKnownRoutes(app, config, deps)
  registerTokenRoutes(app, config, deps)
  registerRevokeRoutes(app, config, deps)
  registerUserRoutes(app, config, deps)
  registerAccountRoutes(app, config, deps)
  await registerSimpleJwtRoutes(app, config, deps)

  // The JWKS, answered before routing (http/answer-before-routing.ts), with
  // what the hooks above give every answer: the security headers and the
  // request id, the log line and the sample, and, by passing it on to
  // Fastify, the Host's refusal and the drain's 503 (decisions.md, "The JWKS before routing").
  answerBeforeRouting(app.server, app.routing, [jwks], {
    commonHeaders: SECURITY_HEADERS,
    passOn: (message) => draining || hostRefusal(message) !== undefined,
    requestIdOf: (message) => requestIdOf(message.headers['x-request-id'], message.socket.remoteAddress),
    record: (message, route, status, elapsed, requestId) => {
      const method = message.method ?? ''
      countAnswer(method, route, status, elapsed)
      if (deps.logger.isLevelEnabled('info')) {
        const ip = addressOrPeer(config.trustProxy.length > 0 ? proxyAddr(message, trustedPeer) : message.socket.remoteAddress, message)
        deps.logger.info({ reqId: requestId, ...requestLine(method, route, status, elapsed, ip) }, 'request')
      }
    }
  })
  return app
}

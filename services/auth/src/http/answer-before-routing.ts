/**
 * Answers made before Fastify routes the request, for a route whose answers
 * are ready in memory, where Fastify's own work is a large part of what an
 * answer costs: the JWKS, which every verifier fetches. Fastify's routing,
 * its request and reply objects, its hooks and the handler's promise were
 * about a quarter of the JWKS's CPU per answer (docs/decisions.md, "The
 * JWKS before routing"). What every answer carries is kept: the security
 * headers, the request id, the Host check (by passing the request on), the
 * log line and the histogram sample. Any other request, one on such a path
 * with a query or another method, or one the options pass on (a Host to
 * refuse, a drain begun), goes to Fastify, which answers it as it would
 * anyway.
 * @module
 */
import type { IncomingMessage, RequestListener, Server } from 'node:http'
import { performance } from 'node:perf_hooks'

/** A ready answer; the same object for as long as it holds, so what is made of it is made once. */
export interface ReadyAnswer {
  status: number
  headers: Readonly<Record<string, string>>
  body: string | undefined
}

/** A route answered before routing: its exact path (without a query) and its methods. */
export interface EarlyRoute {
  path: string
  methods: ReadonlySet<string>
  answer: (message: IncomingMessage) => ReadyAnswer
}

export interface BeforeRouting {
  /** The headers every answer carries. */
  commonHeaders: Readonly<Record<string, string>>
  /** Whether Fastify must answer this request instead: its Host is refused, or a drain has begun. */
  passOn: (message: IncomingMessage) => boolean
  requestIdOf: (message: IncomingMessage) => string
  /** The answer's log line and histogram sample, as the routed request's would be, once it is sent; `elapsed` in ms. */
  record: (message: IncomingMessage, route: string, status: number, elapsed: number, requestId: string) => void
}

/**
 * Puts the early routes in front of `routing` (Fastify's own request
 * listener, which the server was made with and which this replaces).
 */
export function answerBeforeRouting (server: Server, routing: RequestListener, routes: readonly EarlyRoute[], options: BeforeRouting): void {
  const byPath = new Map(routes.map((route) => [route.path, route]))
  const common = Object.entries(options.commonHeaders).flat()
  // Each answer's header lines but the request id, flat as writeHead takes them.
  const linesOf = new WeakMap<ReadyAnswer, string[]>()
  const headerLines = (answer: ReadyAnswer): string[] => {
    let lines = linesOf.get(answer)
    if (lines === undefined) {
      const length = answer.body === undefined ? [] : ['content-length', String(Buffer.byteLength(answer.body))]
      lines = [...common, ...Object.entries(answer.headers).flat(), ...length]
      linesOf.set(answer, lines)
    }
    return lines
  }
  const [own, ...others] = server.listeners('request')
  if (own !== routing || others.length > 0) throw new Error('the server must have Fastify\'s routing as its one request listener')
  server.removeListener('request', routing)
  server.on('request', function answerOrRoute (message, response) {
    const route = byPath.get(message.url ?? '')
    if (route === undefined || !route.methods.has(message.method ?? '') || options.passOn(message)) {
      routing(message, response)
      return
    }
    const started = performance.now()
    const requestId = options.requestIdOf(message)
    const answer = route.answer(message)
    // Recorded once sent, as Fastify records a routed answer (onResponse, on
    // `finish`): an answer pipelined behind another is sent after it, and
    // one whose connection ends first is never sent, nor recorded.
    response.on('finish', () => { options.record(message, route.path, answer.status, performance.now() - started, requestId) })
    response.writeHead(answer.status, [...headerLines(answer), 'x-request-id', requestId])
    // Node leaves the body out of a HEAD's answer itself.
    response.end(answer.body)
  })
}

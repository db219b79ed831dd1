/**
 * Shedding the routes that run argon2 (password grant, sign-up, password
 * change): the first hook such a route runs once its body is parsed, ahead of
 * the per-IP limiter (an IPC round trip to the primary in an HTTP worker), so
 * during a flood a shed answer costs one flag read and the reply: no IPC, no
 * database, no audit row, no hashing. A full hashing queue (the instance's,
 * announced to every worker) is refused with `Retry-After: 1`; pressure on
 * this process (event loop, heap) with `Retry-After: 2`. Refresh, the JWKS
 * and health are never shed: shedding them would log everyone out to save a
 * login.
 * @module
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { OAuthError } from '../errors.js'
import { connectionClosed, connectionGone } from '../http/errors.js'
import type { Metrics } from '../metrics/metrics.js'
import type { PasswordHashing } from '../passwords/hasher.js'

const PRESSURE_RETRY_AFTER = 2

export interface SheddingDeps {
  hasher: Pick<PasswordHashing, 'saturated' | 'capacity' | 'overloaded'>
  metrics: Pick<Metrics, 'login'>
  /** The process is under pressure now (and has settled after start-up). */
  underPressure: () => boolean
  /** Routes whose sheds count as logins (`tessera_logins_total{outcome="shed"}`). */
  loginRoutes: ReadonlySet<string>
}

/** Whether this request would run argon2 (the route's declared policy: on a token endpoint only the password grant does). */
function hashesPassword (request: FastifyRequest): boolean {
  return request.routeOptions.config.hashesPassword === 'always' || (request.body as { grant_type?: unknown } | undefined)?.grant_type === 'password'
}

/**
 * The hook; the route's error format shapes the 503 (http/errors.ts).
 * A request let through holds one place of `capacity` until its answer is
 * done: a flag alone would let every waiting client through each time the
 * queue opened, and all of them would do their database work before the
 * queue refused all but a few.
 */
export function argon2Shedding (deps: SheddingDeps): (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void {
  let admitted = 0
  const release = (): void => { admitted-- }
  const refusal = (): OAuthError | undefined => {
    if (admitted >= deps.hasher.capacity || deps.hasher.saturated) return deps.hasher.overloaded()
    if (deps.underPressure()) return new OAuthError('temporarily_unavailable', 'the service is overloaded; retry shortly', { retryAfter: PRESSURE_RETRY_AFTER, detail: 'under pressure' })
    return undefined
  }
  return function shedArgon2Work (request, reply, done) {
    // First of these routes' hooks once the body is in: a client already gone costs no limiter, database or hash.
    if (connectionGone(request)) {
      done(connectionClosed())
      return
    }
    if (!hashesPassword(request)) {
      done()
      return
    }
    const refused = refusal()
    if (refused === undefined) {
      admitted++
      reply.raw.once('close', release)
    } else if (deps.loginRoutes.has(request.routeOptions.url ?? '')) {
      deps.metrics.login('shed')
    }
    done(refused)
  }
}

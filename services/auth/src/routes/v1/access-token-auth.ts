/**
 * Bearer access tokens on /v1 routes, verified against the in-memory keyring
 * (never over HTTP to ourselves) by tokens/verify-access.ts. Every refusal is
 * a 401 with WWW-Authenticate (RFC 6750 §3).
 * @module
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { App, Deps } from '../../http/app-types.js'
import type { Config } from '../../config.js'
import { InvalidTokenError } from '../../errors.js'
import { isSessionLive } from '../../sessions/live.js'
import { accessTokenVerifier, UnknownKidError } from '../../tokens/verify-access.js'
import { authorizationHeader } from '../../http/authorization.js'

export interface Principal {
  userId: string
  sessionId: string
  clientId: string
  scope: string
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined
  }
}

const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i

function bearerToken (request: FastifyRequest): string {
  const value = authorizationHeader(request, 'Bearer error="invalid_request"')
  const match = typeof value === 'string' ? BEARER.exec(value) : null
  if (match?.[1] === undefined) throw new InvalidTokenError('no well-formed Bearer token')
  return match[1]
}

export function principalOf (request: FastifyRequest): Principal {
  if (request.principal === undefined) throw new InvalidTokenError('route not authenticated')
  return request.principal
}

/** Gives every request a `principal` slot, set by `authenticate` below. */
export function registerAccessTokenAuth (app: App): void {
  app.decorateRequest('principal', undefined)
}

/**
 * The hooks of authenticated routes. `authenticate` verifies the Bearer
 * token alone and sets request.principal, or fails with 401; it runs at
 * onRequest, so a request without a valid token is refused before its body
 * is read or validated (a 400 naming a field would tell a caller without a
 * token how the route's body is shaped, and RFC 6750 §3.1 answers it 401).
 * It is synchronous, so the hot route pays no promise for it.
 * `requireLiveSession`, a preHandler, also requires the token's session to be
 * live: a database read, so it runs after the shedding of the routes that hash
 * (a flood must not take the pool). GET /v1/me needs only the first: it joins
 * the session into its one query.
 */
export function accessTokenAuth (config: Pick<Config, 'issuer' | 'audience'>, deps: Pick<Deps, 'db' | 'keyring' | 'clock'>): {
  authenticate: (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void
  requireLiveSession: (request: FastifyRequest) => Promise<void>
} {
  const verifier = accessTokenVerifier(config, deps.keyring)
  const admit = (request: FastifyRequest, token: string): void => {
    const claims = verifier.verify(token, deps.clock())
    request.principal = { userId: claims.sub, sessionId: claims.sid, clientId: claims.clientId, scope: claims.scope }
  }
  const authenticate = function authenticate (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void {
    let token: string | undefined
    try {
      token = bearerToken(request)
      admit(request, token)
    } catch (err) {
      // Only a kid not heard of yet waits on a promise (Keyring.catchUp): a known kid's request stays synchronous.
      if (!(err instanceof UnknownKidError) || token === undefined) {
        done(err as Error)
        return
      }
      const presented = token
      deps.keyring.catchUp(err.kid).then((held) => {
        if (held) admit(request, presented)
        done(held ? undefined : err)
      }).catch((retryErr: unknown) => { done(retryErr as Error) })
      return
    }
    done()
  }
  const requireLiveSession = async function requireLiveSession (request: FastifyRequest): Promise<void> {
    const principal = principalOf(request)
    if (!await isSessionLive(deps.db, principal.userId, principal.sessionId, deps.clock())) throw new InvalidTokenError('session ended or user disabled')
  }
  return { authenticate, requireLiveSession }
}

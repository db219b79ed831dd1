/**
 * Bearer access tokens on /v1 routes, verified with @fastify/jwt against the
 * in-memory keyring (never over HTTP to ourselves). Before the signature, the
 * header must say what we mint: RS256, typ at+jwt, a kid we publish, and no
 * embedded key or key URL (RFC 8725 §3.1, §3.11). A refresh token fails on
 * typ and aud. Every refusal is a 401 with WWW-Authenticate (RFC 6750 §3).
 * @module
 */
import fastifyJwt, { type TokenOrHeader } from '@fastify/jwt'
import type { FastifyRequest } from 'fastify'
import type { App, Deps } from '../../http/app-types.js'
import type { Config } from '../../config.js'
import { InvalidTokenError } from '../../errors.js'
import { isSessionLive } from '../../sessions/live.js'

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

interface TokenHeader { alg?: unknown, typ?: unknown, kid?: unknown, jwk?: unknown, jku?: unknown, x5u?: unknown, x5c?: unknown, crit?: unknown }

const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'crit'] as const

function refuseHeader (header: TokenHeader): string | undefined {
  if (header.alg !== 'RS256') return `alg ${String(header.alg)} refused`
  if (typeof header.typ !== 'string' || !['at+jwt', 'application/at+jwt'].includes(header.typ.toLowerCase())) return 'typ is not at+jwt'
  if (typeof header.kid !== 'string') return 'no kid'
  const embedded = FORBIDDEN_HEADERS.find((name) => header[name] !== undefined)
  return embedded === undefined ? undefined : `header ${embedded} refused`
}

function bearerToken (request: FastifyRequest): string {
  const value = request.headers.authorization
  const match = typeof value === 'string' ? /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i.exec(value) : null
  if (match?.[1] === undefined) throw new InvalidTokenError('no well-formed Bearer token')
  return match[1]
}

export function registerAccessTokenAuth (app: App, config: Config, deps: Deps): void {
  void app.register(fastifyJwt, {
    secret: async (_request: FastifyRequest, token: TokenOrHeader) => {
      const header: TokenHeader = 'header' in token ? token.header : token
      const kid = typeof header.kid === 'string' ? header.kid : ''
      const key = deps.keyring.accessVerificationKey(kid)
      if (key === undefined) throw new InvalidTokenError(`unknown kid ${kid}`)
      return key.publicPem
    },
    verify: {
      algorithms: ['RS256'],
      allowedIss: config.issuer,
      allowedAud: config.audience,
      requiredClaims: ['exp', 'iat', 'sub', 'sid', 'jti'],
      extractToken: bearerToken
    },
    decode: { complete: true }
  })
  app.decorateRequest('principal', undefined)
}

/**
 * Verifies the Bearer token alone and sets request.principal, or throws 401.
 * Only for a route that reads the session itself (GET /v1/me joins it into its
 * one query); every other route uses authenticateLive.
 */
export async function authenticate (request: FastifyRequest): Promise<void> {
  const token = bearerToken(request)
  let decoded: { header: TokenHeader } | null
  try {
    decoded = request.server.jwt.decode<{ header: TokenHeader }>(token, { complete: true })
  } catch {
    decoded = null
  }
  const refusal = decoded === null ? 'undecodable' : refuseHeader(decoded.header)
  if (refusal !== undefined) throw new InvalidTokenError(refusal)
  let claims: Record<string, unknown>
  try {
    claims = await request.jwtVerify<Record<string, unknown>>({ complete: false })
  } catch (cause) {
    throw new InvalidTokenError(cause instanceof Error ? cause.message : 'verification failed')
  }
  const { sub, sid, client_id: clientId, scope } = claims
  if (typeof sub !== 'string' || typeof sid !== 'string') throw new InvalidTokenError('sub or sid missing')
  request.principal = { userId: sub, sessionId: sid, clientId: typeof clientId === 'string' ? clientId : '', scope: typeof scope === 'string' ? scope : '' }
}

export function principalOf (request: FastifyRequest): Principal {
  if (request.principal === undefined) throw new InvalidTokenError('route not authenticated')
  return request.principal
}

/** preHandler for routes that need a caller: a valid token whose session is still live, or 401. */
export function authenticateLive (deps: Pick<Deps, 'db' | 'clock'>): (request: FastifyRequest) => Promise<void> {
  const verifyToken = authenticate
  // Named like the token-only check: a route's printed hook list reads "authenticate" either way.
  const authenticateSession = async function authenticate (request: FastifyRequest): Promise<void> {
    await verifyToken(request)
    const principal = principalOf(request)
    if (!await isSessionLive(deps.db, principal.userId, principal.sessionId, deps.clock())) throw new InvalidTokenError('session ended or user disabled')
  }
  return authenticateSession
}

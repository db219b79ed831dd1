/**
 * The caller's own account: /v1/me, sessions, logout, password.
 * @module
 */
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { App, Deps } from '../../http/app-types.js'
import type { Config } from '../../config.js'
import { InvalidTokenError, ProblemError } from '../../errors.js'
import { liveProfile } from '../../users/profile.js'
import { changePassword } from '../../users/change-password.js'
import { listLiveSessions } from '../../sessions/list.js'
import { endOwnSession, logout } from '../../sessions/logout.js'
import { requestContext } from '../context.js'
import { backoffPolicy } from '../../passwords/login-throttle.js'
import { PASSWORD_RULE } from '../../passwords/policy.js'
import { forbidCaching } from '../personal.js'
import { accessTokenAuth, principalOf } from './access-token-auth.js'
import { BEARER, NO_STORE, TIMESTAMP } from '../openapi.js'
import { UUID_PATTERN } from '../../util/uuid.js'

const Me = Type.Object({ id: Type.String(), username: Type.String(), created_at: TIMESTAMP, session_id: Type.String(), scope: Type.String(), client_id: Type.String() })
const SessionList = Type.Object({
  sessions: Type.Array(Type.Object({
    id: Type.String(),
    client_id: Type.String(),
    created_at: TIMESTAMP,
    last_used_at: TIMESTAMP,
    expires_at: TIMESTAMP,
    user_agent: Type.Union([Type.String(), Type.Null()]),
    ip: Type.Union([Type.String(), Type.Null()]),
    current: Type.Boolean()
  }))
})
const SessionParams = Type.Object({ id: Type.String({ format: 'uuid', pattern: UUID_PATTERN }) })
const Logout = Type.Union([Type.Object({ all: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), Type.Null()])
const PasswordBody = Type.Object({
  current_password: Type.String({ minLength: 1, maxLength: 1024 }),
  new_password: Type.String({ minLength: 1, maxLength: 1024, description: PASSWORD_RULE })
}, { additionalProperties: false })
const Ended = Type.Object({ sessions_ended: Type.Integer() })

const FORM = /^application\/x-www-form-urlencoded\b/i

/**
 * A form has no booleans, only text: its `all=true` and `all=false` are read
 * as JSON's true and false before validation, since Ajv coerces no types
 * (app.ts). Only those two words; anything else stays text, which the schema
 * refuses, and a JSON string "true" is left to be refused too.
 */
function readFormBoolean (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  const body = request.body
  if (FORM.test(request.headers['content-type'] ?? '') && typeof body === 'object' && body !== null && 'all' in body) {
    if (body.all === 'true') body.all = true
    else if (body.all === 'false') body.all = false
  }
  done()
}

export function registerAccountRoutes (app: App, config: Config, deps: Deps): void {
  // The token at onRequest on every route; /v1/me reads the session in its own one query, every other route checks it in requireLiveSession.
  const { authenticate, requireLiveSession } = accessTokenAuth(config, deps)
  const backoff = backoffPolicy(config)
  app.get('/v1/me', { onRequest: authenticate, schema: { tags: ['account'], summary: 'The caller\'s account and session', security: BEARER, response: { 200: { ...Me, headers: NO_STORE } } } }, async (request, reply) => {
    const principal = principalOf(request)
    const profile = await liveProfile(deps.db, principal.userId, principal.sessionId, deps.clock())
    if (profile === undefined) throw new InvalidTokenError('session ended or user disabled')
    // On the profile only: its 401 is every route's (routes/openapi.ts documents one shape for it).
    forbidCaching(reply)
    return { id: profile.id, username: profile.username, created_at: profile.createdAt.toISOString(), session_id: principal.sessionId, scope: principal.scope, client_id: principal.clientId }
  })

  app.get('/v1/sessions', { onRequest: authenticate, preHandler: requireLiveSession, schema: { tags: ['account'], summary: 'The caller\'s live sessions', security: BEARER, response: { 200: { ...SessionList, headers: NO_STORE } } } }, async (request, reply) => {
    forbidCaching(reply)
    const principal = principalOf(request)
    const sessions = await listLiveSessions(deps.db, principal.userId, deps.clock())
    return {
      sessions: sessions.map((s) => ({
        id: s.id,
        client_id: s.clientId,
        created_at: s.createdAt.toISOString(),
        last_used_at: s.lastUsedAt.toISOString(),
        expires_at: s.expiresAt.toISOString(),
        user_agent: s.userAgent,
        ip: s.ip,
        current: s.id === principal.sessionId
      }))
    }
  })

  app.delete('/v1/sessions/:id', {
    onRequest: authenticate,
    preHandler: requireLiveSession,
    schema: { tags: ['account'], summary: 'End one of the caller\'s sessions', security: BEARER, params: SessionParams, response: { 204: Type.Unsafe<undefined>({ description: 'Ended', type: 'null' }) } }
  }, async (request, reply) => {
    const principal = principalOf(request)
    const ended = await endOwnSession(deps.db, { userId: principal.userId, sessionId: request.params.id, now: deps.clock(), context: requestContext(request) })
    if (!ended) throw new ProblemError(404, 'Not Found', { publicDetail: 'no such session' })
    return await reply.code(204).send()
  })

  app.post('/v1/logout', { onRequest: authenticate, preValidation: readFormBoolean, preHandler: requireLiveSession, schema: { tags: ['account'], summary: 'End this session, or every session with {"all": true}', security: BEARER, body: Logout, response: { 200: Ended } } }, async (request) => {
    const principal = principalOf(request)
    const all = request.body?.all === true
    return { sessions_ended: await logout(deps.db, { userId: principal.userId, sessionId: principal.sessionId, all, now: deps.clock(), context: requestContext(request) }) }
  })

  app.put('/v1/password', { config: { rateLimited: true, hashesPassword: 'always' }, onRequest: authenticate, preHandler: requireLiveSession, schema: { tags: ['account'], summary: 'Change the password; every other session ends', security: BEARER, body: PasswordBody, response: { 200: Ended } } }, async (request) => {
    const principal = principalOf(request)
    const ended = await changePassword(deps.db, deps.hasher, backoff, {
      userId: principal.userId,
      sessionId: principal.sessionId,
      currentPassword: request.body.current_password,
      newPassword: request.body.new_password,
      clock: deps.clock,
      context: requestContext(request)
    })
    return { sessions_ended: ended }
  })
}

/**
 * POST /v1/users: sign-up, when TESSERA_SIGNUP=open.
 * @module
 */
import { Type } from '@sinclair/typebox'
import type { App, Deps } from '../../http/app-types.js'
import type { Config } from '../../config.js'
import { signUp } from '../../users/create.js'
import { NO_NUL, PASSWORD_RULE, USERNAME_RULE } from '../../passwords/policy.js'
import { requestContext } from '../context.js'
import { forbidCaching } from '../personal.js'
import { NO_STORE, responseHeader, TIMESTAMP } from '../openapi.js'

const SignUp = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 256, pattern: NO_NUL, description: USERNAME_RULE }),
  password: Type.String({ minLength: 1, maxLength: 1024, description: PASSWORD_RULE })
}, { additionalProperties: false })

const CreatedUser = Type.Object({ id: Type.String(), username: Type.String(), created_at: TIMESTAMP })

export function registerUserRoutes (app: App, config: Config, deps: Deps): void {
  app.post('/v1/users', {
    config: { rateLimited: true, hashesPassword: 'always' },
    schema: {
      tags: ['account'],
      summary: 'Sign up (403 when TESSERA_SIGNUP=closed); log in with /oauth/token next',
      body: SignUp,
      response: { 201: { ...CreatedUser, headers: { Location: responseHeader('/v1/me: where the new user reads the account once logged in'), ...NO_STORE } } }
    }
  }, async (request, reply) => {
    const user = await signUp(deps.db, deps.hasher, config.signup, request.body, requestContext(request))
    forbidCaching(reply)
    // No per-user URL exists: the account is read at /v1/me, as that user.
    return await reply.code(201).header('location', '/v1/me')
      .send({ id: user.id, username: user.username, created_at: user.createdAt.toISOString() })
  })
}

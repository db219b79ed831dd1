/**
 * POST /oauth/revoke (RFC 7009): 200 for every well-formed request from an
 * authenticated (or public) client.
 * @module
 */
import { Type } from '@sinclair/typebox'
import type { App, Deps } from '../../http/app-types.js'
import type { Config } from '../../config.js'
import { clientCredentials } from '../../clients/credentials.js'
import { revokeToken } from '../../grants/revoke-token.js'
import { requestContext } from '../context.js'
import { CLIENT_AUTHENTICATION, NO_STORE } from '../openapi.js'
import { authorizationHeader } from '../../http/authorization.js'
import { presentParameters } from './parameters.js'

const RevokeRequest = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 4096 }),
  token_type_hint: Type.Optional(Type.String({ maxLength: 64 })),
  client_id: Type.Optional(Type.String({ maxLength: 64 })),
  client_secret: Type.Optional(Type.String({ maxLength: 512 }))
})

export function registerRevokeRoutes (app: App, config: Config, deps: Deps): void {
  const issuer = { db: deps.db, keyring: deps.keyring, config, clientCache: deps.clientCache }
  app.post('/oauth/revoke', {
    config: { errorFormat: 'oauth', rateLimited: true },
    schema: {
      tags: ['oauth'],
      summary: 'Revoke a refresh token and end its session (RFC 7009); 200 for every well-formed request',
      security: CLIENT_AUTHENTICATION,
      body: RevokeRequest,
      response: { 200: Type.Object({}, { description: 'Revoked, or nothing to revoke', headers: NO_STORE }) }
    }
  }, async (request, reply) => {
    const body = presentParameters(request.body)
    const credentials = clientCredentials({ authorization: authorizationHeader(request), clientId: body.client_id, clientSecret: body.client_secret })
    const outcome = await revokeToken(issuer, { token: request.body.token, hint: body.token_type_hint, credentials, now: deps.clock(), context: requestContext(request) })
    if (outcome === 'ended') deps.metrics.revoked()
    return await reply.header('cache-control', 'no-store').send({})
  })
}

/**
 * POST /oauth/token: the password, refresh_token and client_credentials
 * grants (RFC 6749 §4.3, §6, §4.4), form-encoded or JSON, with client
 * authentication (§2.3) and resource indicators (RFC 8707). Unknown
 * parameters are ignored as §3.2 says; a repeated parameter arrives as an
 * array and fails the schema, except `resource`, which RFC 8707 lets repeat
 * (and which the domain refuses with invalid_target).
 * @module
 */
import { Type, type Static } from '@sinclair/typebox'
import type { App, Deps } from '../../http/app-types.js'
import type { Config } from '../../config.js'
import { OAuthError } from '../../errors.js'
import { clientCredentials } from '../../clients/credentials.js'
import { clientCredentialsGrant } from '../../grants/client-credentials.js'
import { isGrantType } from '../../clients/register.js'
import { passwordGrant } from '../../grants/password.js'
import { refreshGrant } from '../../grants/refresh.js'
import type { TokenPair } from '../../grants/issue.js'
import { NO_NUL } from '../../passwords/policy.js'
import { requestContext } from '../context.js'
import { CLIENT_AUTHENTICATION, OAUTH_NO_STORE } from '../openapi.js'
import { authorizationHeader } from '../../http/authorization.js'
import { presentParameters } from './parameters.js'
import { counted, issuerOf, loginDepsOf, loginOutcome, refreshOutcome } from '../grant-outcomes.js'

const TokenRequest = Type.Object({
  grant_type: Type.String({ maxLength: 64 }),
  username: Type.Optional(Type.String({ maxLength: 256, pattern: NO_NUL })),
  password: Type.Optional(Type.String({ maxLength: 1024 })),
  refresh_token: Type.Optional(Type.String({ maxLength: 4096 })),
  scope: Type.Optional(Type.String({ maxLength: 1024 })),
  client_id: Type.Optional(Type.String({ maxLength: 64 })),
  client_secret: Type.Optional(Type.String({ maxLength: 512 })),
  resource: Type.Optional(Type.Union([Type.String({ maxLength: 1024 }), Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 16 })]))
})
type TokenRequestBody = Static<typeof TokenRequest>

const TokenResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  refresh_token: Type.Optional(Type.String()),
  refresh_expires_in: Type.Optional(Type.Integer()),
  scope: Type.String()
})

function required (body: Partial<TokenRequestBody>, name: 'username' | 'password' | 'refresh_token'): string {
  const value = body[name]
  if (value === undefined) throw new OAuthError('invalid_request', `${name}: is required for grant_type=${body.grant_type ?? ''}`)
  return value
}

function toTokenResponse (pair: TokenPair): Static<typeof TokenResponse> {
  return {
    access_token: pair.accessToken,
    token_type: 'Bearer',
    expires_in: pair.expiresIn,
    refresh_token: pair.refreshToken,
    refresh_expires_in: pair.refreshExpiresIn,
    scope: pair.scope
  }
}

export function registerTokenRoutes (app: App, config: Config, deps: Deps): void {
  const issuer = issuerOf(config, deps)
  const loginDeps = loginDepsOf(config, deps)
  app.post('/oauth/token', {
    config: { errorFormat: 'oauth', rateLimited: true, hashesPassword: 'password-grant' },
    schema: {
      tags: ['oauth'],
      summary: 'grant_type=password (RFC 6749 §4.3) or refresh_token (§6): a token pair; client_credentials (§4.4, a confidential client): an access token alone',
      security: CLIENT_AUTHENTICATION,
      body: TokenRequest,
      response: { 200: { ...TokenResponse, headers: OAUTH_NO_STORE } }
    }
  }, async (request, reply) => {
    const body = presentParameters(request.body)
    const grantType = body.grant_type
    if (grantType === undefined) throw new OAuthError('invalid_request', 'grant_type: is required')
    if (!isGrantType(grantType)) {
      throw new OAuthError('unsupported_grant_type', 'grant_type must be password, refresh_token or client_credentials')
    }
    const common = {
      credentials: clientCredentials({ authorization: authorizationHeader(request), clientId: body.client_id, clientSecret: body.client_secret }),
      resource: body.resource,
      scope: body.scope,
      now: deps.clock(),
      context: requestContext(request)
    }
    void reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
    if (grantType === 'client_credentials') {
      const token = await clientCredentialsGrant(issuer, common)
      deps.metrics.tokenIssued('client_credentials')
      return await reply.send({ access_token: token.accessToken, token_type: 'Bearer', expires_in: token.expiresIn, scope: token.scope })
    }
    let pair: TokenPair
    if (grantType === 'password') {
      const input = { ...common, username: required(body, 'username'), password: required(body, 'password') }
      pair = await counted(async () => await passwordGrant(loginDeps, input), loginOutcome, deps.metrics.login)
      deps.metrics.login('ok')
    } else {
      const input = { ...common, refreshToken: required(body, 'refresh_token') }
      const refreshed = await counted(async () => await refreshGrant(issuer, input), refreshOutcome, deps.metrics.refreshed)
      deps.metrics.refreshed(refreshed.outcome)
      pair = refreshed
    }
    deps.metrics.tokenIssued(grantType)
    return await reply.send(toTokenResponse(pair))
  })
}

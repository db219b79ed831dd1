/**
 * The JWKS and RFC 8414 metadata. The JWKS body and ETag come ready-made from
 * the keyring, built once per key change, never per request.
 * @module
 */
import { Type } from '@sinclair/typebox'
import type { App, Deps } from '../http/app-types.js'
import { JWKS_SHARED_MAX_AGE, type Config } from '../config.js'

const CLIENT_AUTH_METHODS = ['none', 'client_secret_basic', 'client_secret_post']

/**
 * RFC 8414 metadata; every URL derives from the issuer. Only what Tessera
 * serves: no OpenID fields (no ID tokens, no subject types), no signed
 * client assertions; the documentation URL is the OpenAPI document.
 */
export function serverMetadata (config: Pick<Config, 'issuer' | 'scopes'>): Record<string, unknown> {
  return {
    issuer: config.issuer,
    token_endpoint: `${config.issuer}/oauth/token`,
    revocation_endpoint: `${config.issuer}/oauth/revoke`,
    jwks_uri: `${config.issuer}/.well-known/jwks.json`,
    grant_types_supported: ['password', 'refresh_token', 'client_credentials'],
    response_types_supported: [],
    scopes_supported: config.scopes,
    token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
    revocation_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
    // The API's own description, served by this process (routes/openapi.ts).
    service_documentation: `${config.issuer}/openapi.json`
  }
}

// These bodies are sent pre-serialized (strings): the schemas describe them
// for /openapi.json, and Fastify never serializes a string.
const JWK_SET = Type.Unsafe<string>({
  description: 'The JWK set (application/jwk-set+json)',
  type: 'object',
  required: ['keys'],
  properties: {
    keys: {
      type: 'array',
      items: {
        type: 'object',
        required: ['kty', 'kid', 'alg', 'use', 'n', 'e'],
        properties: { kty: { const: 'RSA' }, kid: { type: 'string' }, alg: { const: 'RS256' }, use: { const: 'sig' }, n: { type: 'string' }, e: { type: 'string' } }
      }
    }
  }
})
const METADATA = Type.Unsafe<string>({ description: 'RFC 8414 metadata', type: 'object', required: ['issuer', 'token_endpoint', 'jwks_uri'], additionalProperties: true, properties: { issuer: { type: 'string' }, token_endpoint: { type: 'string' }, jwks_uri: { type: 'string' } } })

function etagMatches (header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.split(',').some((candidate) => {
    const tag = candidate.trim().replace(/^W\//, '')
    return tag === '*' || tag === etag
  })
}

export function registerWellKnownRoutes (app: App, config: Config, deps: Deps): void {
  // s-maxage bounds how old a shared cache's copy can be (TESSERA_KEY_PUBLISH_LEAD
  // counts on it); the verifier behind it still keeps the copy for max-age.
  const cacheControl = `public, max-age=${config.jwksMaxAge}, s-maxage=${JWKS_SHARED_MAX_AGE}`
  const jwksSchema = {
    tags: ['discovery'],
    summary: 'The public signing keys (RFC 7517); honours If-None-Match',
    response: {
      200: JWK_SET,
      304: Type.Unsafe<undefined>({ description: 'Not modified: the ETag still matches', type: 'null' })
    },
    produces: ['application/jwk-set+json']
  }
  app.get('/.well-known/jwks.json', { schema: jwksSchema }, async (request, reply) => {
    const { body, etag } = deps.keyring.jwks
    void reply.header('cache-control', cacheControl).header('etag', etag)
    if (etagMatches(request.headers['if-none-match'], etag)) return await reply.code(304).send()
    return await reply.type('application/jwk-set+json').send(body)
  })

  const metadata = JSON.stringify(serverMetadata(config))
  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    app.get(path, {
      schema: { tags: ['discovery'], summary: 'RFC 8414 authorization server metadata', response: { 200: METADATA } }
    }, async (_request, reply) =>
      await reply.header('cache-control', 'public, max-age=3600').type('application/json').send(metadata))
  }
}

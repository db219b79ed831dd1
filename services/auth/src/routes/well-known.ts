/**
 * The JWKS and RFC 8414 metadata. The JWKS body and ETag come ready-made from
 * the keyring, built once per key change, never per request; so do the
 * answers made of them (jwksAnswersOf).
 * @module
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from '@sinclair/typebox'
import type { App, Deps } from '../http/app-types.js'
import type { Jwks, Keyring } from '../keys/keyring.js'
import type { EarlyRoute } from '../http/answer-before-routing.js'
import { JWKS_SHARED_MAX_AGE, type Config } from '../config.js'
import { responseHeader } from './openapi.js'

const CLIENT_AUTH_METHODS = ['none', 'client_secret_basic', 'client_secret_post']

/**
 * RFC 8414 metadata; every URL derives from the issuer. Only what Tessera
 * serves: no OpenID fields (no ID tokens, no subject types), no signed
 * client assertions; the documentation URL is the OpenAPI document.
 * No `response_types_supported` either, though §2 calls it REQUIRED: with
 * no authorization endpoint Tessera has no response type, §3.2 says a claim
 * with zero elements MUST be omitted, and naming `code` would send clients
 * to an endpoint that does not exist.
 */
function serverMetadata (config: Pick<Config, 'issuer' | 'scopes'>): Record<string, unknown> {
  return {
    issuer: config.issuer,
    token_endpoint: `${config.issuer}/oauth/token`,
    revocation_endpoint: `${config.issuer}/oauth/revoke`,
    jwks_uri: `${config.issuer}/.well-known/jwks.json`,
    grant_types_supported: ['password', 'refresh_token', 'client_credentials'],
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
const URL_MEMBER = { type: 'string', format: 'uri' }
const NAMES = { type: 'array', items: { type: 'string' } }
/** Every member serverMetadata writes; a later member a client does not know it ignores (RFC 8414 §3.2). */
const METADATA = Type.Unsafe<string>({
  description: 'RFC 8414 metadata',
  type: 'object',
  required: Object.keys(serverMetadata({ issuer: '', scopes: [] })),
  additionalProperties: true,
  properties: {
    issuer: URL_MEMBER,
    token_endpoint: URL_MEMBER,
    revocation_endpoint: URL_MEMBER,
    jwks_uri: URL_MEMBER,
    grant_types_supported: NAMES,
    scopes_supported: NAMES,
    token_endpoint_auth_methods_supported: NAMES,
    revocation_endpoint_auth_methods_supported: NAMES,
    service_documentation: URL_MEMBER
  }
})

function etagMatches (header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  // What a verifier sends back is the one tag it was given: matched without the list's parsing.
  if (header === etag) return true
  return header.split(',').some((candidate) => {
    const tag = candidate.trim().replace(/^W\//, '')
    return tag === '*' || tag === etag
  })
}

/** The JWKS answer's caching headers, on a 200 and a 304 alike (jwksAnswersOf). */
const JWKS_HEADERS = {
  'Cache-Control': responseHeader('public, max-age=TESSERA_JWKS_MAX_AGE, s-maxage=…: how long a verifier may keep the set'),
  ETag: responseHeader('the set\'s version, for If-None-Match')
}

/** What Fastify would make of `.type('application/jwk-set+json')` on a string body, given whole so it is not rebuilt per request. */
const JWK_SET_TYPE = 'application/jwk-set+json; charset=utf-8'

export const JWKS_PATH = '/.well-known/jwks.json'

/** One of the JWKS's two answers: the set, or a 304 when If-None-Match names its tag (RFC 9110 §13.1.2). */
export interface JwksAnswer {
  status: 200 | 304
  /** The answer's own; a 304's are the validators and caching a 200 would carry (RFC 9110 §15.4.5), no representation metadata. */
  headers: Readonly<Record<string, string>>
  body: string | undefined
}

/**
 * The JWKS's answers for the keyring's current set, made again only when the
 * keyring publishes a new one (it replaces its `jwks` only then): a request
 * picks one of two ready objects.
 */
function jwksAnswersOf (cacheControl: string, keyring: Pick<Keyring, 'jwks'>): (ifNoneMatch: string | undefined) => JwksAnswer {
  let made: { of: Jwks, notModified: JwksAnswer, ok: JwksAnswer } | undefined
  return (ifNoneMatch) => {
    const jwks = keyring.jwks
    if (made?.of !== jwks) {
      const validators = { 'cache-control': cacheControl, etag: jwks.etag }
      made = {
        of: jwks,
        notModified: { status: 304, headers: validators, body: undefined },
        ok: { status: 200, headers: { ...validators, 'content-type': JWK_SET_TYPE }, body: jwks.body }
      }
    }
    return etagMatches(ifNoneMatch, jwks.etag) ? made.notModified : made.ok
  }
}

/**
 * Registers the JWKS and the metadata, and returns the JWKS as a route that
 * buildApp answers before Fastify routes it (http/answer-before-routing.ts),
 * with the very answers the registered route gives.
 */
export function registerWellKnownRoutes (app: App, config: Config, deps: Deps): EarlyRoute {
  // s-maxage bounds how old a shared cache's copy can be (TESSERA_KEY_PUBLISH_LEAD
  // counts on it); the verifier behind it still keeps the copy for max-age.
  const jwksAnswerFor = jwksAnswersOf(`public, max-age=${config.jwksMaxAge}, s-maxage=${JWKS_SHARED_MAX_AGE}`, deps.keyring)
  const jwksSchema = {
    tags: ['discovery'],
    summary: 'The public signing keys (RFC 7517); honours If-None-Match',
    response: {
      200: { ...JWK_SET, headers: JWKS_HEADERS },
      304: Type.Unsafe<undefined>({ description: 'Not modified: the ETag still matches', type: 'null', headers: JWKS_HEADERS })
    },
    produces: ['application/jwk-set+json']
  }
  // The JWKS and the metadata answer from memory, in the tick they are routed.
  const fromMemory = { answersAtOnce: true }
  const answerJwks = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const answer = jwksAnswerFor(request.headers['if-none-match'])
    return await reply.headers(answer.headers).code(answer.status).send(answer.body)
  }
  app.get(JWKS_PATH, { schema: jwksSchema, config: fromMemory, exposeHeadRoute: false }, answerJwks)
  // HEAD by the same answer rather than Fastify's generated route, which sets
  // `content-length: 0` on any answer without a body, a 304 included: RFC
  // 9110 §8.6 allows a 304 only the 200's length. Node leaves the body out of
  // a HEAD itself. Hidden from /openapi.json, as every generated HEAD route is.
  app.head(JWKS_PATH, { schema: { hide: true }, config: fromMemory }, answerJwks)

  const metadata = JSON.stringify(serverMetadata(config))
  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    app.get(path, {
      schema: { tags: ['discovery'], summary: 'RFC 8414 authorization server metadata', response: { 200: { ...METADATA, headers: { 'Cache-Control': responseHeader('public, max-age=3600') } } } },
      config: fromMemory
    }, async (_request, reply) =>
      await reply.header('cache-control', 'public, max-age=3600').type('application/json').send(metadata))
  }
  return { path: JWKS_PATH, methods: new Set(['GET', 'HEAD']), answer: (message) => jwksAnswerFor(message.headers['if-none-match']) }
}

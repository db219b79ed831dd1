/**
 * SimpleJWT's routes (TESSERA_SIMPLEJWT_COMPAT=on) under TESSERA_SIMPLEJWT_PREFIX,
 * so a client of a DRF + djangorestframework-simplejwt stack works unchanged.
 * Only the shapes are SimpleJWT's: each route calls the same domain function
 * as /oauth/token or /oauth/revoke, so sessions, rotation with grace, reuse
 * detection, back-off, limits and audit are Tessera's own. Bodies are read
 * the way DRF's CharField reads them (JSON, urlencoded or multipart form, as
 * DRF's default parsers take; trimmed; every missing field listed), and
 * refusals are DRF's `{"detail","code"}`.
 * @module
 */
import type { FastifyRequest } from 'fastify'
import { Type, type TObject } from '@sinclair/typebox'
import type { App, Deps } from '../http/app-types.js'
import type { Config } from '../config.js'
import type { ClientCredentials } from '../clients/credentials.js'
import { DrfError, OAuthError, RefreshReuseError, SessionEndedError } from '../errors.js'
import { passwordGrant } from '../grants/password.js'
import { refreshGrant } from '../grants/refresh.js'
import { revokeToken } from '../grants/revoke-token.js'
import { tokenStanding } from '../grants/verify-token.js'
import { requestContext } from './context.js'
import { counted, issuerOf, loginDepsOf, loginOutcome, refreshOutcome } from './grant-outcomes.js'
import { parseMultipartForm } from './simplejwt-multipart.js'
import { fromUtf8 } from '../http/json-body.js'
import { NO_STORE } from './openapi.js'
import { formParser, lastValues } from '../http/form-body.js'

/** SimpleJWT's one answer to every failed login; the log keeps which failure it was (the cause's detail). */
function noAccount (cause: OAuthError): DrfError {
  return new DrfError(401, { detail: 'No active account found with the given credentials' }, { cause })
}
/** SimpleJWT's verify of a blacklisted refresh token: a validation error, so 400 and non_field_errors. */
function blacklisted (): DrfError {
  return new DrfError(400, { non_field_errors: ['Token is blacklisted'] }, { detail: 'a refresh token used past its grace window, or of an ended session' })
}

function tokenNotValid (detail: 'Token is invalid or expired' | 'Token is blacklisted', cause?: unknown): DrfError {
  return new DrfError(401, { detail, code: 'token_not_valid' }, { cause })
}

/**
 * A refresh refused because its token is spent: reused by its own client, or
 * of an ended session. Another client's reuse is told as any token of
 * another client (invalid), so the presenter does not learn it was a real one.
 */
function spent (err: OAuthError): boolean {
  return (err instanceof RefreshReuseError && !err.byAnotherClient) || err instanceof SessionEndedError
}

const LONE_SURROGATE = /\p{Surrogate}/u

function readField (value: unknown): string | string[] {
  if (value === undefined) return ['This field is required.']
  if (value === null) return ['This field may not be null.']
  if (typeof value !== 'string' && typeof value !== 'number') return ['Not a valid string.']
  const text = String(value).trim()
  if (text === '') return ['This field may not be blank.']
  // DRF's CharField then runs its validators and lists what each refuses: NUL (which Postgres could not store
  // as text either), and a lone surrogate (ProhibitSurrogateCharactersValidator: the first one, by its code point).
  const refusals: string[] = []
  if (text.includes('\u0000')) refusals.push('Null characters are not allowed.')
  const surrogate = LONE_SURROGATE.exec(text)?.[0]
  if (surrogate !== undefined) refusals.push(`Surrogate characters are not allowed: U+${surrogate.charCodeAt(0).toString(16).toUpperCase()}.`)
  return refusals.length > 0 ? refusals : text
}

/** Python's name for the type of a JSON body that is not an object, as DRF's serializer names it. */
function pythonTypeOf (body: unknown): string {
  if (Array.isArray(body)) return 'list'
  if (typeof body === 'string') return 'str'
  if (typeof body === 'boolean') return 'bool'
  return Number.isInteger(body) ? 'int' : 'float'
}

/** The named string fields of a JSON or form body, or a 400 listing every field that is wrong. */
function fields<K extends string> (request: FastifyRequest, names: readonly K[]): Record<K, string> {
  const body = request.body
  // No body at all reads as an empty form, so every field is "required"; JSON that is not an object is DRF's non_field_errors.
  if (body === null) throw new DrfError(400, { non_field_errors: ['No data provided'] })
  if (body !== undefined && (typeof body !== 'object' || Array.isArray(body))) {
    throw new DrfError(400, { non_field_errors: [`Invalid data. Expected a dictionary, but got ${pythonTypeOf(body)}.`] })
  }
  const source = (body ?? {}) as Record<string, unknown>
  const values: Partial<Record<K, string>> = {}
  const errors: Record<string, string[]> = {}
  for (const name of names) {
    const read = readField(source[name])
    if (typeof read === 'string') values[name] = read
    else errors[name] = read
  }
  if (Object.keys(errors).length > 0) throw new DrfError(400, errors)
  return values as Record<K, string>
}

/** Rethrows the domain's invalid_grant as `refusal`; limits and overload keep their own status. */
async function refusedAs<T> (work: () => Promise<T>, refusal: (err: OAuthError) => DrfError): Promise<T> {
  try {
    return await work()
  } catch (err) {
    if (err instanceof OAuthError && err.error === 'invalid_grant') throw refusal(err)
    throw err
  }
}

/**
 * Every compat route serves the default public client. SimpleJWT's token
 * views read no Authorization header (`authentication_classes = ()`), and
 * neither do these: a Basic header meant for a proxy in front (nginx
 * auth_basic on a staging site) or set globally in a client's HTTP library
 * is ignored, not taken for a client's authentication. A confidential client
 * uses /oauth/token.
 */
const DEFAULT_CLIENT: ClientCredentials = { method: 'none', clientId: undefined }

/** The members in the order SimpleJWT's serializers write them (the reply's serializer follows the schema's order). */
const Pair = Type.Object({ refresh: Type.String(), access: Type.String() })
const RefreshedPair = Type.Object({ access: Type.String(), refresh: Type.String() })
const Empty = Type.Object({})

/** The bodies `fields()` reads, for the document only: validating them would answer Ajv's refusals, not DRF's. */
const Credentials = Type.Object({ username: Type.String(), password: Type.String() })
const RefreshToken = Type.Object({ refresh: Type.String() })
const AnyToken = Type.Object({ token: Type.String({ description: 'an access or refresh token' }) })

export function simplejwtPaths (config: Pick<Config, 'simplejwtPrefix'>): { login: string, refresh: string, verify: string, blacklist: string } {
  const prefix = config.simplejwtPrefix
  return { login: `${prefix}/`, refresh: `${prefix}/refresh/`, verify: `${prefix}/verify/`, blacklist: `${prefix}/blacklist/` }
}

export async function registerSimpleJwtRoutes (root: App, config: Config, deps: Deps): Promise<void> {
  if (!config.simplejwtCompat) return
  // A context of their own: bodies are parsed as DRF parses them on these routes only.
  await root.register(async (app: App) => {
    // Both forms give each field its last value, as Django's QueryDict gives DRF (a JSON list stays "not a string").
    // A form that is not UTF-8 is refused, where Django reads U+FFFD in its place: a password is never read altered.
    app.removeContentTypeParser('application/x-www-form-urlencoded')
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, formParser(lastValues))
    app.addContentTypeParser('multipart/form-data', parseMultipartForm)
    // DRF reads an empty JSON body as no data (every field "required"); Fastify's own parser refuses it, and parses the
    // rest here: UTF-8 only, as DRF's parser decodes it, and a __proto__ or constructor.prototype member dropped, as
    // DRF drops any member its serializer does not read.
    const json = app.getDefaultJsonParser('remove', 'remove')
    app.removeContentTypeParser('application/json')
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, fromUtf8((request, body, done) => {
      if (body === '') done(null, undefined)
      else json(request, body, done)
    }))
    registerRoutes(app, config, deps)
  })
}

function registerRoutes (app: App, config: Config, deps: Deps): void {
  const loginDeps = loginDepsOf(config, deps)
  const issuer = issuerOf(config, deps)
  const paths = simplejwtPaths(config)
  // Every route logs in or handles tokens like /oauth/token: the same per-IP budget; the login hashes.
  const options = (summary: string, body: TObject, ok: typeof Pair | typeof RefreshedPair | typeof Empty, hashesPassword?: 'always') => ({
    config: { errorFormat: 'simplejwt' as const, rateLimited: true, documentedBody: body, ...(hashesPassword === undefined ? {} : { hashesPassword }) },
    // A pair of tokens is never stored by a cache (RFC 6749 §5.1, as for /oauth/token).
    schema: { tags: ['simplejwt'], summary, response: { 200: ok === Empty ? ok : { ...ok, headers: NO_STORE } } }
  })

  app.post(paths.login, options('TokenObtainPairView: a password grant for the default client; 401 for wrong credentials', Credentials, Pair, 'always'), async (request, reply) => {
    const { username, password } = fields(request, ['username', 'password'])
    const input = { username, password, scope: undefined, credentials: DEFAULT_CLIENT, resource: undefined, now: deps.clock(), context: requestContext(request), alwaysPair: true }
    const pair = await refusedAs(async () => await counted(async () => await passwordGrant(loginDeps, input), loginOutcome, deps.metrics.login), noAccount)
    deps.metrics.login('ok')
    deps.metrics.tokenIssued('password')
    return await reply.header('cache-control', 'no-store').send({ refresh: pair.refreshToken, access: pair.accessToken })
  })

  app.post(paths.refresh, options('TokenRefreshView: a new pair, with Tessera\'s rotation, grace and reuse detection', RefreshToken, RefreshedPair), async (request, reply) => {
    const { refresh } = fields(request, ['refresh'])
    const input = { refreshToken: refresh, scope: undefined, credentials: DEFAULT_CLIENT, resource: undefined, now: deps.clock(), context: requestContext(request) }
    const pair = await refusedAs(async () => await counted(async () => await refreshGrant(issuer, input), refreshOutcome, deps.metrics.refreshed),
      (err) => tokenNotValid(spent(err) ? 'Token is blacklisted' : 'Token is invalid or expired', err))
    deps.metrics.refreshed(pair.outcome)
    deps.metrics.tokenIssued('refresh_token')
    return await reply.header('cache-control', 'no-store').send({ access: pair.accessToken, refresh: pair.refreshToken })
  })

  app.post(paths.verify, options('TokenVerifyView: {} when the token is valid', AnyToken, Empty), async (request, reply) => {
    const { token } = fields(request, ['token'])
    const standing = await tokenStanding(issuer, token, deps.clock())
    if (standing === 'spent') throw blacklisted()
    if (standing === 'invalid') throw tokenNotValid('Token is invalid or expired')
    return await reply.send({})
  })

  app.post(paths.blacklist, options('TokenBlacklistView: ends the refresh token\'s session', RefreshToken, Empty), async (request, reply) => {
    const { refresh } = fields(request, ['refresh'])
    const outcome = await revokeToken(issuer, { token: refresh, hint: 'refresh_token', refreshTokenOnly: true, credentials: DEFAULT_CLIENT, now: deps.clock(), context: requestContext(request) })
    if (outcome === 'already ended') throw tokenNotValid('Token is blacklisted')
    if (outcome === 'nothing to end') throw tokenNotValid('Token is invalid or expired')
    deps.metrics.revoked()
    return await reply.send({})
  })
}

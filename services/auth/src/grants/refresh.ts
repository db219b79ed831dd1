/**
 * The refresh grant, as a checklist over named queries (each takes the
 * database first). Its database work is one decision of the SQL function
 * tessera_refresh_grant (migrations/0005_refresh_grant.js), sent alone or
 * with the process's other refreshes of the moment (refresh-decisions.ts):
 * it authenticates the client, checks the session's client and resource,
 * and decides, serialized per session by a row lock on the session (never by
 * process memory, so any number of instances behave as one):
 *  1. the client is who it says and may refresh (else invalid_client, audited
 *     here, or unauthorized_client);
 *  2. the session is live and its user enabled, the token's key not revoked;
 *  3. an unused token is marked used and its successor inserted;
 *  4. a used token inside the grace window gets the same successor again
 *     (re-signed byte for byte) for racing tabs;
 *  5. a used token after the window is reuse: the whole session ends, in a
 *     transaction of its own here (end.ts writes every ending and its audit),
 *     whichever client presented it and whatever scope or resource it asked
 *     for (migrations/0016); another client's token otherwise, used or not,
 *     is refused with nothing written, as is a wider scope or a resource the
 *     session may not ask for.
 * @module
 */
import { randomUUID } from 'node:crypto'
import type { Config } from '../config.js'
import { OAuthError, RefreshReuseError, SessionEndedError } from '../errors.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { authenticateClient, clientAuthenticationFailed, requireGrant, unauthorizedClient } from '../clients/authenticate.js'
import type { ClientCredentials } from '../clients/credentials.js'
import { requestedResource } from '../clients/resource.js'
import { secretDigest } from '../clients/secret.js'
import type { RefreshTokenRecord } from '../tokens/mint.js'
import { verifyRefreshToken, type RefreshClaims } from '../tokens/verify-refresh.js'
import type { RefreshDecisionRow, RefreshDecisions } from './refresh-decisions.js'
import { endSessions } from '../sessions/end.js'
import { currentKid, tokenPair, type Issuer, type TokenPair } from './issue.js'
import { narrowedScope, requestedScopes } from '../sessions/scope.js'

export interface RefreshGrantInput {
  refreshToken: string
  scope: string | undefined
  credentials: ClientCredentials
  resource: string | string[] | undefined
  now: Date
  context: RequestContext
}

export type RotationOutcome = 'rotated' | 'grace'

/** What the grant runs with: the process's one RefreshDecisions, which sends its refreshes together. */
export type RefreshIssuer = Issuer & { config: Pick<Config, 'refreshGrace' | 'refreshTtl'>, refreshDecisions: RefreshDecisions }

/** A failed client authentication, as the function answers it. */
const CLIENT_FAILURE = 'client: '

/** The function's two reuse decisions: by the session's own client, and by another. */
const REUSE = 'reuse'
const REUSE_BY_ANOTHER_CLIENT = 'reuse by another client'

/**
 * Reuse: the whole family ends, with its audit, in one transaction. Replays
 * at once can each be judged reuse before the first of them has ended the
 * session; only the one that ends it records the detection, as a replay
 * that came after would find the session ended and record nothing.
 * `presentedBy`: the client that presented another client's token, recorded
 * in the detection's detail (absent when the owner did).
 */
async function endReusedFamily (db: Issuer['db'], claims: RefreshClaims, now: Date, context: RequestContext, presentedBy: string | undefined): Promise<void> {
  const detail: Record<string, string> = presentedBy === undefined ? { jti: claims.jti } : { jti: claims.jti, presented_by: presentedBy }
  await db.transaction().execute(async (trx) => {
    const ended = await endSessions(trx, { sessionId: claims.sid }, 'reuse', now, { ...context, actor: 'system' })
    if (ended > 0) await recordAudit(trx, { type: 'refresh.reuse_detected', actor: 'system', userId: claims.sub, sessionId: claims.sid, ...context, detail })
  })
}

function issuedRecord (row: RefreshDecisionRow, claims: RefreshClaims): RefreshTokenRecord & { clientId: string, sessionScope: string } | undefined {
  if (row.successor_jti === null || row.successor_kid === null || row.successor_issued_at === null || row.successor_expires_at === null ||
    row.session_client_id === null || row.session_scope === null) return undefined
  return {
    jti: row.successor_jti,
    sessionId: claims.sid,
    userId: claims.sub,
    kid: row.successor_kid,
    issuedAt: row.successor_issued_at,
    expiresAt: row.successor_expires_at,
    clientId: row.session_client_id,
    sessionScope: row.session_scope
  }
}

function refused (reason: string): OAuthError {
  return new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked', { detail: reason })
}

/**
 * The token's signature and claims are checked before the one round trip.
 * When they fail, the client is still judged first, as every grant does, so
 * a bad client hears invalid_client whatever its token.
 */
async function verifiedClaims (deps: RefreshIssuer, input: RefreshGrantInput): Promise<RefreshClaims> {
  try {
    return await verifyRefreshToken(deps.config, deps.keyring, input.refreshToken, input.now)
  } catch (err) {
    requireGrant(await authenticateClient(deps, input), 'refresh_token')
    throw err
  }
}

export async function refreshGrant (deps: RefreshIssuer, input: RefreshGrantInput): Promise<TokenPair & { outcome: RotationOutcome }> {
  const { credentials } = input
  const resource = requestedResource(input.resource, deps.config.issuer)
  const wantedScope = requestedScopes(input.scope)
  const claims = await verifiedClaims(deps, input)
  const clientId = credentials.clientId ?? deps.config.defaultClientId
  const row = await deps.refreshDecisions.decide({
    presentingClient: clientId,
    presentedSecretDigest: credentials.method === 'none' ? undefined : secretDigest(credentials.secret),
    resource,
    claims,
    wantedScope,
    now: input.now,
    graceSeconds: deps.config.refreshGrace,
    ttlSeconds: deps.config.refreshTtl,
    successorJti: randomUUID(),
    successorKid: currentKid(deps.keyring),
    context: input.context
  })

  if (row.decision.startsWith(CLIENT_FAILURE)) {
    throw await clientAuthenticationFailed(deps.db, { ...input, clientId, reason: row.decision.slice(CLIENT_FAILURE.length) })
  }
  if (row.decision === 'unauthorized client') throw unauthorizedClient(clientId, 'refresh_token')
  if (row.decision === REUSE || row.decision === REUSE_BY_ANOTHER_CLIENT) {
    const byAnotherClient = row.decision === REUSE_BY_ANOTHER_CLIENT
    await endReusedFamily(deps.db, claims, input.now, input.context, byAnotherClient ? clientId : undefined)
    throw new RefreshReuseError(byAnotherClient)
  }
  if (row.decision === 'session revoked') throw new SessionEndedError()
  if (row.decision === 'scope widened') throw new OAuthError('invalid_scope', 'a refresh cannot widen the scope of its session')
  if (row.decision === 'resource not allowed') throw new OAuthError('invalid_target', 'this session may not ask for that resource', { detail: `resource ${resource ?? ''}` })
  const record = row.decision === 'rotated' || row.decision === 'grace' ? issuedRecord(row, claims) : undefined
  if (record === undefined) throw refused(row.decision)
  const scope = narrowedScope(wantedScope, record.sessionScope)
  const username = deps.config.simplejwtCompat ? await usernameOf(deps.db, claims.sub) : undefined
  return { ...tokenPair(deps, record, { clientId: record.clientId, scope, audience: resource, now: input.now, username }), outcome: row.decision as RotationOutcome }
}

/**
 * Only with SimpleJWT compatibility on: the `preferred_username` claim. A
 * second round trip rather than a change to tessera_refresh_grant, whose
 * one round trip serves every refresh when the setting is off.
 */
async function usernameOf (db: Issuer['db'], userId: string): Promise<string | undefined> {
  return (await db.selectFrom('users').select('username').where('id', '=', userId).executeTakeFirst())?.username
}

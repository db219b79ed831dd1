/**
 * The refresh grant. The client authenticates first (a refresh token belongs
 * to the client that got it); then one transaction, serialized per session by a row lock on
 * the session (never by process memory, so any number of instances behave as
 * one):
 *  1. the session is live and its user enabled, the token's key not revoked;
 *  2. an unused token is marked used and its successor inserted;
 *  3. a used token inside the grace window gets the same successor again
 *     (re-signed byte for byte) for racing tabs;
 *  4. a used token after the window is reuse: the whole session ends.
 * @module
 */
import { OAuthError, RefreshReuseError } from '../errors.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { authenticateClient, requireGrant } from '../clients/authenticate.js'
import type { ClientCredentials } from '../clients/credentials.js'
import { audienceFor, requestedResource } from '../clients/resource.js'
import type { RefreshTokenRecord } from '../tokens/mint.js'
import { verifyRefreshToken } from '../tokens/verify-refresh.js'
import { endSessions } from './end.js'
import { refreshTokenRow, successorRecord, tokenPair, type Issuer, type TokenPair } from './issue.js'
import { narrowedScope } from './scope.js'

export interface RefreshGrantInput {
  refreshToken: string
  scope: string | undefined
  credentials: ClientCredentials
  resource: string | string[] | undefined
  now: Date
  context: RequestContext
}

export type RefreshOutcome = 'rotated' | 'grace'

type Decision =
  | { kind: 'issue', record: RefreshTokenRecord, clientId: string, scope: string, audience: string | undefined, outcome: RefreshOutcome }
  | { kind: 'refuse', reason: string }
  | { kind: 'reuse' }

const refused = (reason: string): Decision => ({ kind: 'refuse', reason })

export async function refreshGrant (deps: Issuer, input: RefreshGrantInput): Promise<TokenPair & { outcome: RefreshOutcome }> {
  const resource = requestedResource(input.resource)
  const client = await authenticateClient(deps, input)
  requireGrant(client, 'refresh_token')
  const claims = await verifyRefreshToken(deps.config, deps.keyring, input.refreshToken, input.now)

  const decision = await deps.db.transaction().execute(async (trx): Promise<Decision> => {
    const session = await trx.selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select(['sessions.id', 'sessions.user_id', 'sessions.client_id', 'sessions.scope', 'sessions.resources', 'sessions.expires_at', 'sessions.absolute_expires_at', 'sessions.revoked_at', 'users.disabled_at'])
      .where('sessions.id', '=', claims.sid)
      .forUpdate('sessions')
      .executeTakeFirst()
    if (session === undefined || session.user_id !== claims.sub) return refused('unknown session')
    if (session.client_id !== client.clientId) return refused(`another client's token (${client.clientId})`)
    if (session.revoked_at !== null) return refused('session revoked')
    if (session.disabled_at !== null) return refused('user disabled')
    if (session.expires_at.getTime() <= input.now.getTime()) return refused('session expired')

    const token = await trx.selectFrom('refresh_tokens')
      .innerJoin('signing_keys', 'signing_keys.kid', 'refresh_tokens.kid')
      .select(['refresh_tokens.jti', 'refresh_tokens.used_at', 'refresh_tokens.successor_jti', 'refresh_tokens.session_id', 'signing_keys.state'])
      .where('refresh_tokens.jti', '=', claims.jti)
      .executeTakeFirst()
    if (token === undefined || token.session_id !== session.id) return refused('unknown token')
    if (token.state === 'revoked') return refused('signing key revoked')
    const scope = narrowedScope(input.scope, session.scope)
    const audience = audienceFor(resource, session.resources)

    if (token.used_at === null) {
      const successor = successorRecord(deps, session, input.now)
      if (successor === undefined) return refused('session at its absolute limit')
      // The three writes as one statement (data-modifying CTEs always run to
      // completion): two round trips fewer per refresh. The reads above stay
      // separate: see docs/performance.md.
      await trx
        .with('used', (db) => db.updateTable('refresh_tokens').set({ used_at: input.now, successor_jti: successor.jti })
          .where('jti', '=', token.jti).returning('jti'))
        .with('slid', (db) => db.updateTable('sessions').set({
          last_used_at: input.now,
          expires_at: successor.expiresAt,
          ...(input.context.ip === undefined ? {} : { ip: input.context.ip }),
          ...(input.context.userAgent === undefined ? {} : { user_agent: input.context.userAgent.slice(0, 512) })
        }).where('id', '=', session.id).returning('id'))
        .insertInto('refresh_tokens').values(refreshTokenRow(successor, token.jti))
        .execute()
      return { kind: 'issue', record: successor, clientId: session.client_id, scope, audience, outcome: 'rotated' }
    }

    if (input.now.getTime() - token.used_at.getTime() <= deps.config.refreshGrace * 1000 && token.successor_jti !== null) {
      const successor = await trx.selectFrom('refresh_tokens').select(['jti', 'kid', 'issued_at', 'expires_at'])
        .where('jti', '=', token.successor_jti).executeTakeFirst()
      if (successor === undefined) return refused('successor gone')
      return {
        kind: 'issue',
        record: { jti: successor.jti, sessionId: session.id, userId: session.user_id, kid: successor.kid, issuedAt: successor.issued_at, expiresAt: successor.expires_at },
        clientId: session.client_id,
        scope,
        audience,
        outcome: 'grace'
      }
    }

    await endSessions(trx, { sessionId: session.id }, 'reuse', input.now, { ...input.context, actor: 'system' })
    await recordAudit(trx, { type: 'refresh.reuse_detected', actor: 'system', userId: session.user_id, sessionId: session.id, ...input.context, detail: { jti: token.jti } })
    return { kind: 'reuse' }
  })

  if (decision.kind === 'reuse') throw new RefreshReuseError()
  if (decision.kind === 'refuse') {
    throw new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked', { detail: decision.reason })
  }
  return { ...tokenPair(deps, decision.record, { clientId: decision.clientId, scope: decision.scope, audience: decision.audience, now: input.now }), outcome: decision.outcome }
}

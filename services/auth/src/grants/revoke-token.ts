/**
 * RFC 7009 revocation: a refresh token or an access token of ours ends its
 * session. Anything else (unknown, expired, garbage, already revoked) changes
 * nothing and is not an error, so the endpoint reveals nothing about tokens.
 * A client that names or authenticates itself may revoke only its own
 * tokens (RFC 7009 §2.1); a request naming no client may revoke tokens of
 * public clients only, since a confidential client's token needs that
 * client's authentication. A token of another client is left alone and the
 * answer is the same 200.
 * @module
 */
import type { RequestContext } from '../audit/record.js'
import { authenticateClient, type RegisteredClient } from '../clients/authenticate.js'
import type { ClientCredentials } from '../clients/credentials.js'
import { verifyAnyAudienceAccessToken } from '../tokens/verify-access.js'
import { verifyRefreshToken, type RefreshClaims } from '../tokens/verify-refresh.js'
import { endSessions } from '../sessions/end.js'
import type { Issuer } from './issue.js'

export async function sessionOfAccessToken (issuer: Issuer, token: string, now: Date): Promise<string | undefined> {
  try {
    return (await verifyAnyAudienceAccessToken(issuer.config.issuer, issuer.keyring, token, now)).sid
  } catch {
    return undefined
  }
}

/** A refresh token's claims when it is ours, well signed and unexpired; else undefined. */
export async function refreshClaimsOf (issuer: Issuer, token: string, now: Date): Promise<RefreshClaims | undefined> {
  try {
    return await verifyRefreshToken(issuer.config, issuer.keyring, token, now)
  } catch {
    return undefined
  }
}

async function sessionOfRefreshToken (issuer: Issuer, token: string, now: Date): Promise<string | undefined> {
  return (await refreshClaimsOf(issuer, token, now))?.sid
}

async function mayRevoke (issuer: Issuer, sessionId: string, client: RegisteredClient | undefined): Promise<boolean> {
  const session = await issuer.db.selectFrom('sessions').leftJoin('clients', 'clients.client_id', 'sessions.client_id')
    .select(['sessions.client_id', 'clients.confidential']).where('sessions.id', '=', sessionId).executeTakeFirst()
  if (session === undefined) return false
  return client === undefined ? session.confidential !== true : session.client_id === client.clientId
}

export interface RevokeInput {
  token: string
  hint: string | undefined
  credentials: ClientCredentials
  now: Date
  context: RequestContext
  /** Only a refresh token ends its session (SimpleJWT's blacklist); an access token changes nothing. */
  refreshTokenOnly?: boolean
}

/**
 * What a revocation did: `ended` its session; found it `already ended` (a
 * token of ours, which this client may revoke, whose session had ended
 * before); or found `nothing to end` (not our token, expired, or another
 * client's). RFC 7009's endpoint answers all three alike.
 */
export type RevokeOutcome = 'ended' | 'already ended' | 'nothing to end'

/** `hint` only orders the attempts (RFC 7009 §2.1). */
export async function revokeToken (issuer: Issuer, input: RevokeInput): Promise<RevokeOutcome> {
  const named = input.credentials.method !== 'none' || input.credentials.clientId !== undefined
  const client = named ? await authenticateClient(issuer, input) : undefined
  const attempts = input.refreshTokenOnly === true
    ? [sessionOfRefreshToken]
    : input.hint === 'access_token'
      ? [sessionOfAccessToken, sessionOfRefreshToken]
      : [sessionOfRefreshToken, sessionOfAccessToken]
  for (const attempt of attempts) {
    const sessionId = await attempt(issuer, input.token, input.now)
    if (sessionId === undefined) continue
    if (!await mayRevoke(issuer, sessionId, client)) return 'nothing to end'
    // A confidential client that authenticated ends the session itself; a public client acts for the token's user.
    const actor = client?.confidential === true ? { actor: client.clientId } : {}
    const ended = await issuer.db.transaction().execute(async (trx) =>
      await endSessions(trx, { sessionId }, 'revoke', input.now, { ...input.context, ...actor }))
    return ended > 0 ? 'ended' : 'already ended'
  }
  return 'nothing to end'
}

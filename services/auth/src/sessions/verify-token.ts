/**
 * SimpleJWT's token check (POST /api/token/verify/): an access or a refresh
 * token of ours, signature and claims valid, whose session is still live. A
 * revoked session is refused as SimpleJWT refuses a blacklisted token.
 * @module
 */
import type { Issuer } from './issue.js'
import { sessionOfAccessToken, sessionOfRefreshToken } from '../tokens/revoke.js'

export async function tokenIsLive (issuer: Issuer, token: string, now: Date): Promise<boolean> {
  const sessionId = await sessionOfAccessToken(issuer, token, now) ?? await sessionOfRefreshToken(issuer, token, now)
  if (sessionId === undefined) return false
  const session = await issuer.db.selectFrom('sessions').select('id')
    .where('id', '=', sessionId).where('revoked_at', 'is', null).where('expires_at', '>', now)
    .executeTakeFirst()
  return session !== undefined
}

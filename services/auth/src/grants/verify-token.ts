/**
 * SimpleJWT's token check (POST /api/token/verify/): an access or a refresh
 * token of ours, signature and claims valid, whose session is still live.
 * A refresh token that has been used, or whose session was ended, is
 * `spent`: SimpleJWT blacklists a refresh token when it rotates it or when
 * it is blacklisted, and its verify then refuses it as blacklisted. Telling
 * a client its used refresh token is fine would invite it to present that
 * token again, which past the grace window is reuse and ends the session.
 *
 * Within the grace window after its use, though, a used refresh token is
 * `live`: it still refreshes (to the same successor), and answering `spent`
 * at once would tell whoever stole it the moment its owner rotated it, so
 * that they could take the successor too within the window, undetected
 * (a security review polled verify once a second and shadowed a session
 * this way). Past the window it is `spent`.
 * @module
 */
import type { Issuer } from './issue.js'
import { refreshClaimsOf, sessionOfAccessToken } from './revoke-token.js'

export type TokenStanding = 'live' | 'spent' | 'invalid'

export async function tokenStanding (issuer: Issuer, token: string, now: Date): Promise<TokenStanding> {
  const accessSession = await sessionOfAccessToken(issuer, token, now)
  if (accessSession !== undefined) {
    const session = await issuer.db.selectFrom('sessions').select('id')
      .where('id', '=', accessSession).where('revoked_at', 'is', null).where('expires_at', '>', now)
      .executeTakeFirst()
    return session === undefined ? 'invalid' : 'live'
  }
  const claims = await refreshClaimsOf(issuer, token, now)
  if (claims === undefined) return 'invalid'
  const row = await issuer.db.selectFrom('refresh_tokens')
    .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
    .select(['refresh_tokens.used_at', 'sessions.revoked_at', 'sessions.expires_at'])
    .where('refresh_tokens.jti', '=', claims.jti).where('sessions.id', '=', claims.sid)
    .executeTakeFirst()
  if (row === undefined) return 'invalid'
  // The refresh grant's own bound (migrations/0006): still within the window at its last instant.
  const usedBeyondGrace = row.used_at !== null && row.used_at.getTime() + issuer.config.refreshGrace * 1000 < now.getTime()
  if (row.revoked_at !== null || usedBeyondGrace) return 'spent'
  return row.expires_at > now ? 'live' : 'invalid'
}

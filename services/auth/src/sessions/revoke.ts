/**
 * RFC 7009 revocation: a refresh token or an access token of ours ends its
 * session. Anything else (unknown, expired, garbage, already revoked) changes
 * nothing and is not an error, so the endpoint reveals nothing about tokens.
 * @module
 */
import { jwtVerify } from 'jose'
import type { RequestContext } from '../audit/record.js'
import { verifyRefreshToken } from '../tokens/verify-refresh.js'
import { endSessions } from './end.js'
import type { Issuer } from './issue.js'

export async function sessionOfAccessToken (issuer: Issuer, token: string, now: Date): Promise<string | undefined> {
  try {
    const { payload } = await jwtVerify(token, (header) => {
      const key = issuer.keyring.accessVerificationKey(header.kid ?? '')
      if (key === undefined) throw new Error('unknown kid')
      return key.publicKey
    }, { issuer: issuer.config.issuer, audience: issuer.config.audience, typ: 'at+jwt', algorithms: ['RS256'], currentDate: now })
    return typeof payload.sid === 'string' ? payload.sid : undefined
  } catch {
    return undefined
  }
}

export async function sessionOfRefreshToken (issuer: Issuer, token: string, now: Date): Promise<string | undefined> {
  try {
    return (await verifyRefreshToken(issuer.config, issuer.keyring, token, now)).sid
  } catch {
    return undefined
  }
}

/** Returns whether a session was ended. `hint` only orders the attempts (RFC 7009 §2.1). */
export async function revokeToken (issuer: Issuer, input: { token: string, hint: string | undefined, now: Date, context: RequestContext }): Promise<boolean> {
  const attempts = input.hint === 'access_token'
    ? [sessionOfAccessToken, sessionOfRefreshToken]
    : [sessionOfRefreshToken, sessionOfAccessToken]
  for (const attempt of attempts) {
    const sessionId = await attempt(issuer, input.token, input.now)
    if (sessionId === undefined) continue
    const ended = await issuer.db.transaction().execute(async (trx) =>
      await endSessions(trx, { sessionId }, 'revoke', input.now, input.context))
    return ended > 0
  }
  return false
}

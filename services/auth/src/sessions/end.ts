/**
 * Ending sessions: the one place that revokes refresh families, whatever the
 * reason (logout, reuse, password change, disable, key revoke). Each ended
 * session gets its own audit row.
 * @module
 */
import { sql } from 'kysely'
import type { Db, SessionEndReason } from '../db/database.js'
import { recordAudit, type RequestContext } from '../audit/record.js'

export interface SessionSelector {
  userId?: string
  sessionId?: string
  /** Keep this one session (a password change ends every other). */
  exceptSessionId?: string
  /** Sessions holding a live refresh token signed by this key. */
  kid?: string
  clientId?: string
}

/**
 * Ends the sessions the selector names that are not ended yet; returns how
 * many of them were live, as GET /v1/sessions lists them (not expired by
 * `now`). Run inside the caller's transaction. Every one is ended: a refresh
 * that read the time a moment earlier (or on an instance whose reading of
 * Postgres's clock is a little behind) may still find a session at its expiry edge live, and must
 * then find it ended. Only the live ones are counted and audited: an expired
 * session was over already, so a DELETE of one its owner cannot see is 404,
 * and a logout or a disable does not count it.
 */
export async function endSessions (db: Db, selector: SessionSelector, reason: SessionEndReason, now: Date, context: RequestContext & { actor?: string } = {}): Promise<number> {
  let query = db.updateTable('sessions').set({ revoked_at: now, revoke_reason: reason }).where('revoked_at', 'is', null)
  if (selector.userId !== undefined) query = query.where('user_id', '=', selector.userId)
  if (selector.sessionId !== undefined) query = query.where('id', '=', selector.sessionId)
  if (selector.clientId !== undefined) query = query.where('client_id', '=', selector.clientId)
  if (selector.exceptSessionId !== undefined) query = query.where('id', '<>', selector.exceptSessionId)
  if (selector.kid !== undefined) {
    const kid = selector.kid
    query = query.where('id', 'in', db.selectFrom('refresh_tokens').select('session_id').where('kid', '=', kid))
  }
  const ended = (await query.returning(['id', 'user_id', sql<boolean>`expires_at > ${now}`.as('live')]).execute()).filter((session) => session.live)
  await recordAudit(db, ended.map((session) => ({
    type: 'session.ended' as const,
    actor: context.actor ?? session.user_id,
    userId: session.user_id,
    sessionId: session.id,
    kid: selector.kid,
    ip: context.ip,
    userAgent: context.userAgent,
    requestId: context.requestId,
    detail: { reason }
  })))
  return ended.length
}

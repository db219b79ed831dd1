/**
 * A user's live sessions, newest first, for GET /v1/sessions.
 * @module
 */
import type { Db } from '../db/database.js'

export interface SessionView {
  id: string
  clientId: string
  createdAt: Date
  lastUsedAt: Date
  expiresAt: Date
  userAgent: string | null
  ip: string | null
}

export async function listLiveSessions (db: Db, userId: string, now: Date): Promise<SessionView[]> {
  const rows = await db.selectFrom('sessions')
    .select(['id', 'client_id', 'created_at', 'last_used_at', 'expires_at', 'user_agent', 'ip'])
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now)
    .orderBy('last_used_at', 'desc')
    .limit(500)
    .execute()
  return rows.map((r) => ({ id: r.id, clientId: r.client_id, createdAt: r.created_at, lastUsedAt: r.last_used_at, expiresAt: r.expires_at, userAgent: r.user_agent, ip: r.ip }))
}

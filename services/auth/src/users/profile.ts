/**
 * The caller's profile, read together with its session: on Tessera's own
 * routes a token whose session has ended is refused at once (siblings cannot
 * know that and accept it until `exp`).
 * @module
 */
import type { Db } from '../db/database.js'

export interface Profile {
  id: string
  username: string
  createdAt: Date
}

export async function liveProfile (db: Db, userId: string, sessionId: string, now: Date): Promise<Profile | undefined> {
  const row = await db.selectFrom('users')
    .innerJoin('sessions', 'sessions.user_id', 'users.id')
    .select(['users.id', 'users.username', 'users.created_at'])
    .where('users.id', '=', userId)
    .where('sessions.id', '=', sessionId)
    .where('users.disabled_at', 'is', null)
    .where('sessions.revoked_at', 'is', null)
    .where('sessions.expires_at', '>', now)
    .executeTakeFirst()
  return row === undefined ? undefined : { id: row.id, username: row.username, createdAt: row.created_at }
}

/**
 * Whether an access token's session still stands: on Tessera's own routes a
 * token whose session has ended (logout, password change, reuse, disable) is
 * refused at once, at the cost of this one primary-key read.
 * @module
 */
import type { Db } from '../db/database.js'

export async function isSessionLive (db: Db, userId: string, sessionId: string, now: Date): Promise<boolean> {
  const row = await db.selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select('sessions.id')
    .where('sessions.id', '=', sessionId)
    .where('sessions.user_id', '=', userId)
    .where('sessions.revoked_at', 'is', null)
    .where('sessions.expires_at', '>', now)
    .where('users.disabled_at', 'is', null)
    .executeTakeFirst()
  return row !== undefined
}

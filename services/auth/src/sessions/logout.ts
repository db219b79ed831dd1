/**
 * Ending one's own sessions: logout (this one), logout-all, or one chosen by
 * id. A session that is not the caller's is reported as not found, exactly
 * like one that does not exist.
 * @module
 */
import type { Db } from '../db/database.js'
import type { RequestContext } from '../audit/record.js'
import { endSessions } from './end.js'

export async function logout (db: Db, input: { userId: string, sessionId: string, all: boolean, now: Date, context: RequestContext }): Promise<number> {
  return await db.transaction().execute(async (trx) => input.all
    ? await endSessions(trx, { userId: input.userId }, 'logout_all', input.now, input.context)
    : await endSessions(trx, { userId: input.userId, sessionId: input.sessionId }, 'logout', input.now, input.context))
}

/** False when the user has no such live session. */
export async function endOwnSession (db: Db, input: { userId: string, sessionId: string, now: Date, context: RequestContext }): Promise<boolean> {
  return await db.transaction().execute(async (trx) =>
    await endSessions(trx, { userId: input.userId, sessionId: input.sessionId }, 'session_deleted', input.now, input.context) > 0)
}

/**
 * PUT /v1/password: the current password proves it is the user; the new one
 * replaces it and every other session ends (the one asking stays).
 * @module
 */
import type { Db } from '../db/database.js'
import { ProblemError } from '../errors.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import type { PasswordHashing } from '../passwords/hasher.js'
import { acceptablePassword, normalizePassword } from '../passwords/policy.js'
import { endSessions } from '../sessions/end.js'

export interface PasswordChange {
  userId: string
  sessionId: string
  currentPassword: string
  newPassword: string
  now: Date
  context: RequestContext
}

/** Returns how many other sessions ended. */
export async function changePassword (db: Db, hasher: PasswordHashing, change: PasswordChange): Promise<number> {
  const next = acceptablePassword(change.newPassword, 'new_password')
  const user = await db.selectFrom('users').select(['password_hash']).where('id', '=', change.userId)
    .where('disabled_at', 'is', null).executeTakeFirst()
  if (user === undefined || !(await hasher.verify(user.password_hash, normalizePassword(change.currentPassword)))) {
    throw new ProblemError(403, 'Forbidden', { publicDetail: 'current_password: is incorrect' })
  }
  const hash = await hasher.hash(next)
  return await db.transaction().execute(async (trx) => {
    await trx.updateTable('users').set({ password_hash: hash, password_changed_at: change.now }).where('id', '=', change.userId).execute()
    await recordAudit(trx, { type: 'password.changed', actor: change.userId, userId: change.userId, sessionId: change.sessionId, ...change.context })
    return await endSessions(trx, { userId: change.userId, exceptSessionId: change.sessionId }, 'password_change', change.now, change.context)
  })
}

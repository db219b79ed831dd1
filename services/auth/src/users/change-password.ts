/**
 * PUT /v1/password: the current password proves it is the user; the new one
 * replaces it and every other session ends (the one asking stays). A stolen
 * access token must not make this a guessing oracle: each attempt counts
 * toward the same per-account back-off as logins (login-throttle.ts), and a
 * backed-off account is refused before any hashing.
 * @module
 */
import type { Db } from '../db/database.js'
import { InvalidTokenError, ProblemError } from '../errors.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import type { PasswordHashing } from '../passwords/hasher.js'
import { acceptablePassword, normalizePassword } from '../passwords/policy.js'
import { endSessions } from '../sessions/end.js'
import { isSessionLive } from '../sessions/live.js'
import { backedOff, clearLoginFailures, countUnlessShed, evaluateCounted, type BackoffPolicy } from '../passwords/login-throttle.js'

export interface PasswordChange {
  userId: string
  sessionId: string
  currentPassword: string
  newPassword: string
  /** Read when the attempt is counted, and again once the user's row is locked after the hashes: the change and the sessions it ends are dated after every login that committed before it, not before two argon2 runs or a wait for the lock. */
  clock: () => Date
  context: RequestContext
}

const incorrect = (): ProblemError => new ProblemError(403, 'Forbidden', { publicDetail: 'current_password: is incorrect' })

/** Returns how many other sessions ended. */
export async function changePassword (db: Db, hasher: PasswordHashing, backoff: BackoffPolicy, change: PasswordChange): Promise<number> {
  const next = acceptablePassword(change.newPassword, 'new_password')
  const user = await db.selectFrom('users').select(['username', 'password_hash']).where('id', '=', change.userId)
    .where('disabled_at', 'is', null).executeTakeFirst()
  if (user === undefined) throw incorrect()
  const attempt = await countUnlessShed(db, hasher, user.username, change.clock(), backoff)
  if (attempt.refused) throw backedOff('too many failed password attempts for this account', attempt.retryAfter)
  if (!(await evaluateCounted(db, user.username, backoff, async () => await hasher.verify(user.password_hash, normalizePassword(change.currentPassword))))) {
    await recordAudit(db, {
      type: 'password.change_failed',
      actor: change.userId,
      userId: change.userId,
      sessionId: change.sessionId,
      ...change.context,
      detail: { failures: attempt.failures, blocked_until: attempt.blockedUntil?.toISOString() ?? null }
    })
    throw incorrect()
  }
  const hash = await evaluateCounted(db, user.username, backoff, async () => await hasher.hash(next))
  return await db.transaction().execute(async (trx) => {
    // The hashes ran outside any transaction: a change, a disable or a logout
    // that committed meanwhile is seen here, under the user's row lock, and
    // answered as it would have been had it come first.
    const locked = await trx.selectFrom('users').select(['password_hash', 'disabled_at']).where('id', '=', change.userId).forUpdate().executeTakeFirst()
    const now = change.clock()
    if (!await isSessionLive(trx, change.userId, change.sessionId, now)) throw new InvalidTokenError('session ended during the password change')
    if (locked?.password_hash !== user.password_hash || locked.disabled_at !== null) throw incorrect()
    await trx.updateTable('users').set({ password_hash: hash, password_changed_at: now }).where('id', '=', change.userId).execute()
    await clearLoginFailures(trx, user.username)
    await recordAudit(trx, { type: 'password.changed', actor: change.userId, userId: change.userId, sessionId: change.sessionId, ...change.context })
    return await endSessions(trx, { userId: change.userId, exceptSessionId: change.sessionId }, 'password_change', now, change.context)
  })
}

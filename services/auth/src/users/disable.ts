/**
 * `tessera users disable`: the user can no longer log in, and every session
 * ends at once (its refresh tokens stop working; access tokens live out
 * their few minutes, see docs/decisions.md).
 * @module
 */
import type { Db } from '../db/database.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { endSessions } from '../sessions/end.js'
import { normalizeUsername } from '../passwords/policy.js'

export interface DisabledUser {
  id: string
  username: string
  sessionsEnded: number
  alreadyDisabled: boolean
}

/**
 * Undefined when no such user exists. `clock` is read once the user's row is
 * locked: a login that committed while the disable waited for the lock is
 * ended at a time after it began, not before.
 */
export async function disableUser (db: Db, username: string, clock: () => Date, context: RequestContext & { actor?: string } = {}): Promise<DisabledUser | undefined> {
  const name = normalizeUsername(username)
  if (name === undefined) return undefined
  return await db.transaction().execute(async (trx) => {
    const user = await trx.selectFrom('users').select(['id', 'username', 'disabled_at'])
      .where('username', '=', name).forUpdate().executeTakeFirst()
    if (user === undefined) return undefined
    const now = clock()
    if (user.disabled_at === null) {
      await trx.updateTable('users').set({ disabled_at: now }).where('id', '=', user.id).execute()
      await recordAudit(trx, { type: 'user.disabled', actor: context.actor ?? 'operator', userId: user.id, username: user.username, ...context })
    }
    const ended = await endSessions(trx, { userId: user.id }, 'user_disabled', now, context)
    return { id: user.id, username: user.username, sessionsEnded: ended, alreadyDisabled: user.disabled_at !== null }
  })
}

/**
 * `tessera users unlock`: lifts a user's login back-off and clears its
 * streak, and nothing else. Anyone who knows a username can back it off by
 * failing logins (passwords/login-throttle.ts); a support desk that has
 * verified the user lets them try again at once, without changing their
 * password (set-password) or ending their sessions (disable, enable). A
 * disabled user stays disabled. Why: docs/decisions.md, "users unlock".
 * @module
 */
import type { Db } from '../db/database.js'
import { recordAudit } from '../audit/record.js'
import { normalizeUsername } from '../passwords/policy.js'
import { clearLoginFailures, streakAt, type BackoffPolicy, type BackoffState } from '../passwords/login-throttle.js'
import type { OperatorContext } from './manage.js'

export interface Unlocked {
  id: string
  username: string
  /** The streak the unlock cleared: no failures when there was none to clear. */
  cleared: BackoffState
  /** The user is still disabled: unlocking lets them try their password, not log in. */
  disabled: boolean
}

/**
 * Clears the user's streak in one transaction with its audit row
 * (`user.unlocked`, written only when there was a streak to clear: an
 * unlock that changes nothing writes nothing, as an enable that changes
 * nothing does). Undefined when no such user exists: names no user has are
 * backed off too, but no one is there to be let in.
 */
export async function unlockUser (db: Db, username: string, clock: () => Date, policy: Pick<BackoffPolicy, 'max'>, context: OperatorContext = {}): Promise<Unlocked | undefined> {
  const name = normalizeUsername(username)
  if (name === undefined) return undefined
  return await db.transaction().execute(async (trx) => {
    // Shared, not exclusive: the row is not changed, only kept from being deleted (with its streak) before the audit row names it.
    const user = await trx.selectFrom('users').select(['id', 'username', 'disabled_at']).where('username', '=', name).forShare().executeTakeFirst()
    if (user === undefined) return undefined
    const cleared = streakAt(await clearLoginFailures(trx, user.username), clock(), policy)
    if (cleared.failures > 0) {
      await recordAudit(trx, {
        type: 'user.unlocked',
        actor: context.actor ?? 'operator',
        userId: user.id,
        username: user.username,
        ...context,
        detail: { failures: cleared.failures, backed_off_until: cleared.backedOffUntil?.toISOString() ?? null }
      })
    }
    return { id: user.id, username: user.username, cleared, disabled: user.disabled_at !== null }
  })
}

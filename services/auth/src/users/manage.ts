/**
 * An operator's day-to-day on accounts (`tessera users …`): list, show,
 * enable, delete, set a password, end every session. Each change is one
 * transaction with its audit row; a user is named by username. A change
 * takes a clock, read once the user's row is locked: a login that committed
 * while it waited for the lock is then ended at a time after it began.
 * @module
 */
import type { Db } from '../db/database.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import type { PasswordHasher } from '../passwords/hasher.js'
import { acceptablePassword, normalizeUsername } from '../passwords/policy.js'
import { clearLoginFailures } from '../passwords/login-throttle.js'
import { endSessions } from '../sessions/end.js'

export interface UserSummary {
  id: string
  username: string
  createdAt: Date
  passwordChangedAt: Date
  disabledAt: Date | null
  liveSessions: number
}

export type OperatorContext = RequestContext & { actor?: string }

function summaries (db: Db, now: Date) {
  return db.selectFrom('users')
    .leftJoin('sessions', (join) => join.onRef('sessions.user_id', '=', 'users.id')
      .on('sessions.revoked_at', 'is', null).on('sessions.expires_at', '>', now))
    .select((eb) => ['users.id', 'users.username', 'users.created_at', 'users.password_changed_at', 'users.disabled_at', eb.fn.count<string>('sessions.id').as('live_sessions')])
    .groupBy('users.id')
}

function toSummary (row: { id: string, username: string, created_at: Date, password_changed_at: Date, disabled_at: Date | null, live_sessions: string }): UserSummary {
  return { id: row.id, username: row.username, createdAt: row.created_at, passwordChangedAt: row.password_changed_at, disabledAt: row.disabled_at, liveSessions: Number(row.live_sessions) }
}

/** Every user by username; only the disabled ones when `disabledOnly`. */
export async function listUsers (db: Db, options: { disabledOnly: boolean, now: Date }): Promise<UserSummary[]> {
  let query = summaries(db, options.now).orderBy('users.username')
  if (options.disabledOnly) query = query.where('users.disabled_at', 'is not', null)
  return (await query.execute()).map(toSummary)
}

/** Undefined when no such user exists. */
export async function showUser (db: Db, username: string, now: Date): Promise<UserSummary | undefined> {
  const name = normalizeUsername(username)
  if (name === undefined) return undefined
  const row = await summaries(db, now).where('users.username', '=', name).executeTakeFirst()
  return row === undefined ? undefined : toSummary(row)
}

/**
 * Lets a disabled user log in again, at once: undefined when no such user
 * exists. The back-off streak goes too, as a password set by an operator
 * clears it: every login while disabled failed, the right password
 * included, so a client that kept trying (an app with stored credentials)
 * had backed the name off for up to TESSERA_LOGIN_BACKOFF_MAX, and `enabled`
 * would have meant refused for that long. An enable that changes nothing
 * leaves the streak alone (docs/decisions.md, "users enable lifts the back-off").
 */
export async function enableUser (db: Db, username: string, context: OperatorContext = {}): Promise<{ id: string, username: string, wasDisabled: boolean } | undefined> {
  const name = normalizeUsername(username)
  if (name === undefined) return undefined
  return await db.transaction().execute(async (trx) => {
    const user = await trx.selectFrom('users').select(['id', 'username', 'disabled_at']).where('username', '=', name).forUpdate().executeTakeFirst()
    if (user === undefined) return undefined
    if (user.disabled_at !== null) {
      await trx.updateTable('users').set({ disabled_at: null }).where('id', '=', user.id).execute()
      await clearLoginFailures(trx, user.username)
      await recordAudit(trx, { type: 'user.enabled', actor: context.actor ?? 'operator', userId: user.id, username: user.username, ...context })
    }
    return { id: user.id, username: user.username, wasDisabled: user.disabled_at !== null }
  })
}

/**
 * Deletes the user with their sessions and refresh tokens (the foreign keys
 * cascade) and their back-off streak; the audit trail keeps the events.
 */
export async function deleteUser (db: Db, username: string, clock: () => Date, context: OperatorContext = {}): Promise<{ id: string, username: string, sessionsEnded: number } | undefined> {
  const name = normalizeUsername(username)
  if (name === undefined) return undefined
  return await db.transaction().execute(async (trx) => {
    // Locked first, so no login starts a session between the read of the live ones and the delete.
    const user = await trx.selectFrom('users').select(['id', 'username']).where('username', '=', name).forUpdate().executeTakeFirst()
    if (user === undefined) return undefined
    // Their rows go with the user (ON DELETE CASCADE); each live one's end is audited first, as every other way of ending a session is.
    const sessionsEnded = await endSessions(trx, { userId: user.id }, 'revoke', clock(), { ...context, actor: context.actor ?? 'operator' })
    await trx.deleteFrom('users').where('id', '=', user.id).execute()
    await clearLoginFailures(trx, user.username)
    await recordAudit(trx, { type: 'user.deleted', actor: context.actor ?? 'operator', userId: user.id, username: user.username, ...context })
    return { ...user, sessionsEnded }
  })
}

/**
 * Replaces the password (a forgotten one, a suspected leak): every session
 * ends and the back-off streak is cleared. Throws a 400 problem when the
 * password does not fit the policy.
 */
export async function setPassword (db: Db, hasher: PasswordHasher, input: { username: string, password: string, clock: () => Date }, context: OperatorContext = {}): Promise<{ id: string, username: string, sessionsEnded: number } | undefined> {
  const name = normalizeUsername(input.username)
  if (name === undefined) return undefined
  const hash = await hasher.hash(acceptablePassword(input.password))
  return await db.transaction().execute(async (trx) => {
    const user = await trx.selectFrom('users').select(['id', 'username']).where('username', '=', name).forUpdate().executeTakeFirst()
    if (user === undefined) return undefined
    // Read once the row is locked, not before the hash: the change and the
    // sessions it ends are dated after every login that committed meanwhile.
    const now = input.clock()
    await trx.updateTable('users').set({ password_hash: hash, password_changed_at: now }).where('id', '=', user.id).execute()
    await clearLoginFailures(trx, user.username)
    await recordAudit(trx, { type: 'password.changed', actor: context.actor ?? 'operator', userId: user.id, username: user.username, ...context })
    const sessionsEnded = await endSessions(trx, { userId: user.id }, 'password_change', now, context)
    return { ...user, sessionsEnded }
  })
}

/** Ends every live session of the user (their refresh tokens stop working at once). */
export async function endUserSessions (db: Db, username: string, clock: () => Date, context: OperatorContext = {}): Promise<{ id: string, username: string, sessionsEnded: number } | undefined> {
  const name = normalizeUsername(username)
  if (name === undefined) return undefined
  return await db.transaction().execute(async (trx) => {
    const user = await trx.selectFrom('users').select(['id', 'username']).where('username', '=', name).forUpdate().executeTakeFirst()
    if (user === undefined) return undefined
    return { ...user, sessionsEnded: await endSessions(trx, { userId: user.id }, 'revoke', clock(), context) }
  })
}

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

/**
 * Each user with a count of their live sessions, counted per user by
 * `sessions_user` rather than by a join grouped over the users: a page of
 * the list (LIMIT) then costs its own users' sessions, not every user's.
 */
function summaries (db: Db, now: Date) {
  return db.selectFrom('users')
    .select((eb) => ['users.id', 'users.username', 'users.created_at', 'users.password_changed_at', 'users.disabled_at',
      eb.selectFrom('sessions').select(eb.fn.countAll<string>().as('live'))
        .whereRef('sessions.user_id', '=', 'users.id').where('sessions.revoked_at', 'is', null).where('sessions.expires_at', '>', now)
        .$asScalar().$notNull().as('live_sessions')])
}

function toSummary (row: { id: string, username: string, created_at: Date, password_changed_at: Date, disabled_at: Date | null, live_sessions: string }): UserSummary {
  return { id: row.id, username: row.username, createdAt: row.created_at, passwordChangedAt: row.password_changed_at, disabledAt: row.disabled_at, liveSessions: Number(row.live_sessions) }
}

export interface UserListing {
  /** Only the disabled users. */
  disabledOnly: boolean
  /** When a session must end after to be live: one time for every page. */
  now: Date
}

/** Users per page of listUserPages: a page is a few hundred kB, and 400,000 users some 400 statements of a few ms. */
export const USER_LIST_PAGE = 1000

/**
 * Every user by username (or the disabled ones), a page at a time: each
 * page is read after the last username of the one before (keyset, by the
 * username index), so a page costs the same wherever it falls and only one
 * is held, whatever the number of users (all 400,000 at once took 709 MB,
 * docs/performance-history.md). No transaction spans the pages, so a paused reader
 * holds no snapshot open: a user created or deleted meanwhile may or may
 * not be listed, and no user is listed twice.
 */
export async function * listUserPages (db: Db, listing: UserListing, pageSize = USER_LIST_PAGE): AsyncGenerator<UserSummary[], void, undefined> {
  let after: string | undefined
  for (;;) {
    let query = summaries(db, listing.now).orderBy('users.username').limit(pageSize)
    if (listing.disabledOnly) query = query.where('users.disabled_at', 'is not', null)
    if (after !== undefined) query = query.where('users.username', '>', after)
    const page = (await query.execute()).map(toSummary)
    const last = page.at(-1)
    if (last !== undefined) yield page
    if (last === undefined || page.length < pageSize) return
    after = last.username
  }
}

/**
 * What a list of users needs to be laid out before its first page is read:
 * its longest username and whether any user in it is disabled. One read of
 * the users alone, their sessions untouched.
 */
export async function userListExtent (db: Db, listing: Pick<UserListing, 'disabledOnly'>): Promise<{ longestUsername: number, anyDisabled: boolean }> {
  let query = db.selectFrom('users').select((eb) => [
    eb.fn.coalesce(eb.fn.max(eb.fn<number>('char_length', ['users.username'])), eb.lit(0)).as('longest'),
    eb.fn.coalesce(eb.fn<boolean>('bool_or', [eb('users.disabled_at', 'is not', null)]), eb.lit(false)).as('any_disabled')
  ])
  if (listing.disabledOnly) query = query.where('users.disabled_at', 'is not', null)
  const row = await query.executeTakeFirstOrThrow()
  return { longestUsername: Number(row.longest), anyDisabled: row.any_disabled }
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

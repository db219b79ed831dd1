/**
 * Per-account login back-off, kept in Postgres so every instance shares it.
 * After `threshold` consecutive failures a name is blocked for
 * base·2^(failures−threshold), capped at `max`; while blocked the password
 * grant and the password change answer 429 without hashing. Every attempt is
 * counted before hashing (countLoginAttempt, a SQL function of
 * migrations/0008, its streak rule 0010); a success deletes the row. Unknown names
 * are tracked exactly like real ones (nothing tells them apart), and the rows
 * are bounded: a streak starts again from zero once `max` has passed since
 * its block ended (migrations/0010), and pruneLoginThrottle deletes such
 * rows and caps the table.
 *
 * Nothing here locks anyone out for good: the worst an attacker can do is keep
 * one name in back-off for `max` at a time, and existing sessions keep working.
 * @module
 */
import { CompiledQuery, sql } from 'kysely'
import type { Db } from '../db/database.js'
import { namedStatement } from '../db/named-statements.js'
import { THROTTLE_CLEANUP_LOCK } from '../db/locks.js'
import type { Config, Seconds } from '../config.js'
import { OAuthError } from '../errors.js'

export interface BackoffPolicy {
  threshold: number
  base: Seconds
  max: Seconds
}

export function backoffPolicy (config: Pick<Config, 'loginBackoffThreshold' | 'loginBackoffBase' | 'loginBackoffMax'>): BackoffPolicy {
  return { threshold: config.loginBackoffThreshold, base: config.loginBackoffBase, max: config.loginBackoffMax }
}

export interface FailureRecord {
  failures: number
  blockedUntil: Date | null
}

/** A counted attempt may go on to hashing; a refused one carries the whole seconds to wait. */
export type Attempt = ({ refused: false } & FailureRecord) | { refused: true, retryAfter: number }

/**
 * The call that counts an attempt as a failure before any hashing
 * (migrations/0008, replaced by 0010): one upsert that also refuses it when the name is
 * blocked, so concurrent attempts on any number of instances each count once
 * and a burst evaluates at most `threshold` guesses (a check-then-act would
 * let the whole burst through). A success then deletes the row. Parameters:
 * key, now, threshold, base, max. Fixed text, sent by name (db/named-statements.ts).
 */
export const COUNT_ATTEMPT_CALL = 'tessera_count_login_attempt($1, $2, $3, $4, $5)'
const COUNT_ATTEMPT_SQL = namedStatement('tessera_count_login_attempt', `select * from ${COUNT_ATTEMPT_CALL}`)

/** What tessera_count_login_attempt answers. */
export interface AttemptRow {
  refused: boolean
  retry_after: number | null
  failures: number | null
  blocked_until: Date | null
}

/** The parameters of COUNT_ATTEMPT_CALL, $1 to $5. */
export function countAttemptParameters (key: string, now: Date, policy: BackoffPolicy): unknown[] {
  return [key, now, policy.threshold, policy.base, policy.max]
}

export function attemptOf (row: AttemptRow | undefined): Attempt {
  if (row === undefined) throw new Error('tessera_count_login_attempt returned no row')
  return row.refused
    ? { refused: true, retryAfter: row.retry_after ?? 1 }
    : { refused: false, failures: row.failures ?? 1, blockedUntil: row.blocked_until }
}

export async function countLoginAttempt (db: Db, key: string, now: Date, policy: BackoffPolicy): Promise<Attempt> {
  const { rows: [row] } = await db.executeQuery<AttemptRow>(CompiledQuery.raw(COUNT_ATTEMPT_SQL, countAttemptParameters(key, now, policy)))
  return attemptOf(row)
}

/** What the back-off needs of the hashing queue: whether it would shed now, and the refusal to throw. */
export interface Shedding {
  readonly saturated: boolean
  overloaded: () => OAuthError
}

/**
 * countLoginAttempt, unless the hashing queue would shed the attempt anyway:
 * during a flood most requests are shed, and a shed request must cost no
 * database write (it would take the pool from the requests being served).
 */
export async function countUnlessShed (db: Db, hashing: Shedding, key: string, now: Date, policy: BackoffPolicy): Promise<Attempt> {
  if (hashing.saturated) throw hashing.overloaded()
  return await countLoginAttempt(db, key, now, policy)
}

/** Runs the hashing of a counted attempt; if the queue sheds it after all, the attempt is refunded. */
export async function evaluateCounted<T> (db: Db, key: string, policy: BackoffPolicy, evaluate: () => Promise<T>): Promise<T> {
  try {
    return await evaluate()
  } catch (err) {
    if (err instanceof OAuthError && err.status === 503) await refundLoginAttempt(db, key, policy)
    throw err
  }
}

/**
 * Takes back an attempt that was counted but never evaluated (the hashing
 * queue shed it): a refusal for load is not a guess. Lifts the block if this
 * attempt was the one that set it.
 */
export async function refundLoginAttempt (db: Db, key: string, policy: BackoffPolicy): Promise<void> {
  await db.updateTable('login_throttle')
    .set({
      failures: sql<number>`failures - 1`,
      blocked_until: sql<Date | null>`CASE WHEN failures - 1 >= ${policy.threshold} THEN blocked_until ELSE NULL END`
    })
    .where('username', '=', key).where('failures', '>', 0)
    .execute()
}

/** A name's back-off as an operator reads it (`tessera users show`, `users unlock`). */
export interface BackoffState {
  /** The failed logins of the name's streak; 0 once the streak has ended, as the next failure would count from one again. */
  failures: number
  /** Until when every login for the name is refused; null when none is. */
  backedOffUntil: Date | null
}

/** What is stored of a streak (a row of login_throttle), if anything. */
export interface StreakRow {
  failures: number
  last_failed_at: Date
  blocked_until: Date | null
}

/**
 * The streak a row holds at `now`. Ended is tessera_count_login_attempt's
 * own rule (migrations/0010): `max` has passed since the block ended, or
 * since the last failure for a streak that never reached a block. A row
 * so ended may still be stored until pruneLoginThrottle takes it, and must
 * not read as failures the next attempt would forget.
 */
export function streakAt (row: StreakRow | undefined, now: Date, policy: Pick<BackoffPolicy, 'max'>): BackoffState {
  if (row === undefined) return { failures: 0, backedOffUntil: null }
  const end = row.blocked_until ?? row.last_failed_at
  if (end.getTime() < now.getTime() - policy.max * 1000) return { failures: 0, backedOffUntil: null }
  // Refused while the block is ahead: the upsert counts an attempt only once blocked_until <= its time.
  return { failures: row.failures, backedOffUntil: row.blocked_until !== null && row.blocked_until > now ? row.blocked_until : null }
}

const STREAK_COLUMNS = ['failures', 'last_failed_at', 'blocked_until'] as const

export async function loginBackoff (db: Db, key: string, now: Date, policy: Pick<BackoffPolicy, 'max'>): Promise<BackoffState> {
  const row = await db.selectFrom('login_throttle').select(STREAK_COLUMNS).where('username', '=', key).executeTakeFirst()
  return streakAt(row, now, policy)
}

/** Forgets the name's streak; returns what was stored of it (for `users unlock` to say and audit), if anything. */
export async function clearLoginFailures (db: Db, key: string): Promise<StreakRow | undefined> {
  return await db.deleteFrom('login_throttle').where('username', '=', key).returning(STREAK_COLUMNS).executeTakeFirst()
}

export interface PruneOptions {
  /** Rows whose block ended (or, never blocked, whose last failure came) longer ago than this are forgotten. */
  max: Seconds
  /** The table never keeps more than this many rows; the oldest go first. */
  maxRows: number
  batch?: number
  /** Bounds one run; the next run continues. */
  maxBatches?: number
  /** Ends the run between batches (the instance is stopping). */
  signal?: AbortSignal
}

/**
 * Deletes stale rows in small batches, each its own transaction holding a
 * transaction-scoped advisory lock, so one instance prunes at a time and no
 * batch holds row locks for long. Returns how many rows went, or undefined
 * when another instance holds the lock.
 */
export async function pruneLoginThrottle (db: Db, now: Date, options: PruneOptions): Promise<number | undefined> {
  const batch = options.batch ?? 1000
  const cutoff = new Date(now.getTime() - options.max * 1000)
  let deleted = 0
  for (let i = 0; i < (options.maxBatches ?? 100) && options.signal?.aborted !== true; i++) {
    const result = await db.transaction().execute(async (trx) => {
      const locked = await sql<{ locked: boolean }>`SELECT pg_try_advisory_xact_lock(${THROTTLE_CLEANUP_LOCK}) AS locked`.execute(trx)
      if (locked.rows[0]?.locked !== true) return undefined
      const expired = await sql`DELETE FROM login_throttle WHERE username IN (
        SELECT username FROM login_throttle WHERE coalesce(blocked_until, last_failed_at) < ${cutoff} ORDER BY last_failed_at LIMIT ${batch})`.execute(trx)
      const expiredCount = Number(expired.numAffectedRows ?? 0)
      if (expiredCount >= batch) return expiredCount
      // Past the cap, the oldest streaks go even if not yet stale: a spray of
      // millions of names must not grow the table without bound.
      const over = await sql`DELETE FROM login_throttle WHERE username IN (
        SELECT username FROM login_throttle ORDER BY last_failed_at
        LIMIT GREATEST(0, LEAST(${batch - expiredCount}, (SELECT count(*) FROM login_throttle) - ${options.maxRows})))`.execute(trx)
      return expiredCount + Number(over.numAffectedRows ?? 0)
    })
    if (result === undefined) return i === 0 ? undefined : deleted
    deleted += result
    if (result < batch) break
  }
  return deleted
}

/** The 429 for a name in back-off: not invalid_grant, since even the right password is refused and the client must wait. */
export function backedOff (reason: string, retryAfter: number): OAuthError {
  return new OAuthError('temporarily_unavailable', `${reason}; retry in ${retryAfter} s`, { status: 429, retryAfter, detail: 'username backed off' })
}

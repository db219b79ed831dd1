/**
 * Deletes what can never be used again: sessions past their expiry or ended
 * longer ago than the retention, refresh tokens past their expiry, and audit
 * events older than the audit retention.
 * In batches of bounded size so no single statement holds locks for long, and
 * by one instance at a time (a session-level advisory lock taken with
 * pg_try_advisory_lock: an instance that finds it taken skips this round).
 * A round is bounded too (maxBatches of each kind) and says when it stopped
 * at that bound rather than for want of rows (`behind`), so its caller runs
 * another soon instead of leaving the rest for a whole interval.
 *
 * Bounded in rows, cascade included. A session's refresh tokens go with it
 * (ON DELETE CASCADE), and a used token is kept until its own expiry (reuse
 * detection), so a busy session ended before its tokens expired holds one
 * row per refresh (every 5 minutes for 30 days: ~8,640). A batch of 1,000
 * such sessions was millions of rows in one statement, past the job's
 * statement timeout on every run, and the kinds after it never ran. So
 * expired tokens go first (most of an expired session's, by their own
 * index); then each batch of due sessions is picked, its remaining tokens
 * are deleted at most batchSize a statement (each statement a batch of the
 * round), and the sessions are deleted once a statement finds fewer than
 * that: their delete cascades to nothing, or to a token a refresh wrote
 * since, which none can on a session expired or ended.
 * @module
 */
import { sql, type DeleteQueryBuilder, type DeleteResult, type ExpressionBuilder, type RawBuilder, type SelectQueryBuilder } from 'kysely'
import type { Database, Db } from '../db/database.js'
import { SESSION_CLEANUP_LOCK } from '../db/locks.js'

export interface CleanupOptions {
  now: Date
  /** Ended sessions are kept this long (seconds) so users and operators can still see them. */
  revokedRetention: number
  /** Audit events are kept this long (seconds). */
  auditRetention: number
  batchSize?: number
  maxBatches?: number
  /** Ends the round between batches (the instance is stopping): the batch in flight finishes, no other starts. */
  signal?: AbortSignal
  /** Who runs it, for the audit.pruned rows: the instances' job (`system`, the default) or `tessera cleanup` (`operator`, `tessera-cli`). */
  by?: { actor: string, userAgent?: string }
}

export interface CleanupResult {
  ran: boolean
  sessions: number
  refreshTokens: number
  auditEvents: number
  /** Some kind may have rows left that were due: its last batch was full when the round stopped (at maxBatches, or told to). */
  behind: boolean
}

export const CLEANUP_BATCH_SIZE = 1000
export const CLEANUP_MAX_BATCHES = 100

interface Deleted { deleted: number, ranOut: boolean }

async function deleteInBatches (batch: (limit: number) => Promise<number>, size: number, maxBatches: number, signal?: AbortSignal): Promise<Deleted> {
  let total = 0
  for (let i = 0; i < maxBatches && signal?.aborted !== true; i++) {
    const deleted = await batch(size)
    total += deleted
    if (deleted < size) return { deleted: total, ranOut: true }
  }
  return { deleted: total, ranOut: false }
}

/** What makes a session due: expired, or ended longer ago than the retention. */
export interface DueSessions { now: Date, revokedBefore: Date }

/**
 * Up to `limit` refresh tokens past their own expiry, found by
 * refresh_tokens_expires_at and deleted by their primary key (`= any(array(…))`,
 * as in deleteTokensOf).
 */
export function deleteExpiredTokens (db: Db, now: Date, limit: number): DeleteQueryBuilder<Database, 'refresh_tokens', DeleteResult> {
  const found = db.selectFrom('refresh_tokens').select('jti').where('expires_at', '<', now).limit(limit)
  return db.deleteFrom('refresh_tokens').where('jti', '=', sql<string>`any(array(${found}))`)
}

/**
 * Up to `limit` audit events older than `before`, oldest first (by
 * audit_events_occurred_at), deleted by their primary key, with the
 * audit.pruned row saying so written by the same statement: the trail is
 * never shortened without a trace, whatever TESSERA_AUDIT_RETENTION says.
 * `id = any(array(…))` rather than `id IN (…)`, as for the tokens: on a table
 * of 90,000 events the semi-join read the whole table.
 */
export function pruneAuditEvents (before: Date, limit: number, by: { actor: string, userAgent?: string }): RawBuilder<{ deleted: string }> {
  return sql<{ deleted: string }>`
    WITH gone AS (
      DELETE FROM audit_events WHERE id = any(array(
        SELECT id FROM audit_events WHERE occurred_at < ${before} ORDER BY occurred_at LIMIT ${limit}))
      RETURNING occurred_at
    ), noted AS (
      INSERT INTO audit_events (type, actor, user_agent, detail)
      SELECT 'audit.pruned', ${by.actor}::text, ${by.userAgent ?? null}::text, jsonb_build_object('deleted', count(*), 'older_than', ${before}::timestamptz,
        'oldest', min(occurred_at), 'newest', max(occurred_at))
      FROM gone HAVING count(*) > 0
    )
    SELECT count(*) AS deleted FROM gone`
}

/** A session's being due, one condition for the pick and for the delete that reads it again. */
function isDue (due: DueSessions) {
  return (eb: ExpressionBuilder<Database, 'sessions'>) => eb.or([eb('expires_at', '<', due.now), eb('revoked_at', '<', due.revokedBefore)])
}

/** Up to `limit` due sessions, by sessions_expires_at and sessions_revoked_at. */
export function selectDueSessions (db: Db, due: DueSessions, limit: number): SelectQueryBuilder<Database, 'sessions', { id: string }> {
  return db.selectFrom('sessions').select('id')
    .where(isDue(due)).limit(limit)
}

/**
 * Up to `limit` refresh tokens of these sessions, by refresh_tokens_session.
 * In any order: nothing points at a token (parent_jti's foreign key, ON
 * DELETE SET NULL, went in migration 0005), and a refresh whose token goes
 * under it is refused invalid_grant whenever it goes.
 */
export function deleteTokensOf (db: Db, sessionIds: string[], limit: number): DeleteQueryBuilder<Database, 'refresh_tokens', DeleteResult> {
  // `= any(array(…))`, not `in (…)`: the tokens found are deleted by their
  // primary key whatever the table's size, where a semi-join is read off
  // statistics and, on a table of 90,000 tokens, read all of it.
  const found = db.selectFrom('refresh_tokens').select('jti').where('session_id', '=', sql<string>`any(${sessionIds}::uuid[])`).limit(limit)
  return db.deleteFrom('refresh_tokens').where('jti', '=', sql<string>`any(array(${found}))`)
}

/** These sessions, if still due (the condition read again, under their row locks). */
export function deleteSessionsIfDue (db: Db, sessionIds: string[], due: DueSessions): DeleteQueryBuilder<Database, 'sessions', DeleteResult> {
  return db.deleteFrom('sessions').where('id', '=', sql<string>`any(${sessionIds}::uuid[])`)
    .where(isDue(due))
}

/**
 * Due sessions, `size` at a time, each batch emptied of its refresh tokens
 * first. A round's batch is one statement deleting at most `size` tokens of
 * the sessions picked, followed by their delete once it found fewer: picked
 * sessions still holding tokens when the round stops are picked again by a
 * later round.
 */
async function deleteDueSessions (db: Db, due: DueSessions, size: number, maxBatches: number, signal?: AbortSignal): Promise<Deleted & { tokens: number }> {
  let deleted = 0
  let tokens = 0
  let picked: string[] = []
  for (let i = 0; i < maxBatches && signal?.aborted !== true; i++) {
    if (picked.length === 0) picked = (await selectDueSessions(db, due, size).execute()).map((row) => row.id)
    if (picked.length === 0) return { deleted, tokens, ranOut: true }
    const emptied = Number((await deleteTokensOf(db, picked, size).executeTakeFirst()).numDeletedRows)
    tokens += emptied
    if (emptied === size) continue
    deleted += Number((await deleteSessionsIfDue(db, picked, due).executeTakeFirst()).numDeletedRows)
    if (picked.length < size) return { deleted, tokens, ranOut: true }
    picked = []
  }
  return { deleted, tokens, ranOut: false }
}

export async function cleanupExpired (db: Db, options: CleanupOptions): Promise<CleanupResult> {
  const size = options.batchSize ?? CLEANUP_BATCH_SIZE
  const by = options.by ?? { actor: 'system' }
  const maxBatches = options.maxBatches ?? CLEANUP_MAX_BATCHES
  const { signal } = options
  return await db.connection().execute(async (conn) => {
    const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${SESSION_CLEANUP_LOCK}) AS locked`.execute(conn)
    if (rows[0]?.locked !== true) return { ran: false, sessions: 0, refreshTokens: 0, auditEvents: 0, behind: false }
    try {
      const refreshTokens = await deleteInBatches(async (limit) => {
        return Number((await deleteExpiredTokens(conn, options.now, limit).executeTakeFirst()).numDeletedRows)
      }, size, maxBatches, signal)
      const due = { now: options.now, revokedBefore: new Date(options.now.getTime() - options.revokedRetention * 1000) }
      const sessions = await deleteDueSessions(conn, due, size, maxBatches, signal)
      const auditBefore = new Date(options.now.getTime() - options.auditRetention * 1000)
      const auditEvents = await deleteInBatches(async (limit) => {
        const { rows: [pruned] } = await pruneAuditEvents(auditBefore, limit, by).execute(conn)
        return Number(pruned?.deleted ?? 0)
      }, size, maxBatches, signal)
      return {
        ran: true,
        sessions: sessions.deleted,
        refreshTokens: refreshTokens.deleted + sessions.tokens,
        auditEvents: auditEvents.deleted,
        behind: !sessions.ranOut || !refreshTokens.ranOut || !auditEvents.ranOut
      }
    } finally {
      await sql`SELECT pg_advisory_unlock(${SESSION_CLEANUP_LOCK})`.execute(conn)
    }
  })
}

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
 * @module
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.js'
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

export async function cleanupExpired (db: Db, options: CleanupOptions): Promise<CleanupResult> {
  const size = options.batchSize ?? CLEANUP_BATCH_SIZE
  const by = options.by ?? { actor: 'system' }
  const maxBatches = options.maxBatches ?? CLEANUP_MAX_BATCHES
  const { signal } = options
  return await db.connection().execute(async (conn) => {
    const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${SESSION_CLEANUP_LOCK}) AS locked`.execute(conn)
    if (rows[0]?.locked !== true) return { ran: false, sessions: 0, refreshTokens: 0, auditEvents: 0, behind: false }
    try {
      const revokedBefore = new Date(options.now.getTime() - options.revokedRetention * 1000)
      const sessions = await deleteInBatches(async (limit) => {
        const result = await conn.deleteFrom('sessions').where('id', 'in', conn.selectFrom('sessions').select('id')
          .where((eb) => eb.or([eb('expires_at', '<', options.now), eb('revoked_at', '<', revokedBefore)])).limit(limit))
          .executeTakeFirst()
        return Number(result.numDeletedRows)
      }, size, maxBatches, signal)
      const refreshTokens = await deleteInBatches(async (limit) => {
        const result = await conn.deleteFrom('refresh_tokens').where('jti', 'in', conn.selectFrom('refresh_tokens').select('jti')
          .where('expires_at', '<', options.now).limit(limit))
          .executeTakeFirst()
        return Number(result.numDeletedRows)
      }, size, maxBatches, signal)
      const auditBefore = new Date(options.now.getTime() - options.auditRetention * 1000)
      // Each batch deleted leaves a row saying so, written by the statement
      // that deletes: the trail is never shortened without a trace, whatever
      // TESSERA_AUDIT_RETENTION says.
      const auditEvents = await deleteInBatches(async (limit) => {
        const { rows: [pruned] } = await sql<{ deleted: string }>`
          WITH gone AS (
            DELETE FROM audit_events WHERE id IN (
              SELECT id FROM audit_events WHERE occurred_at < ${auditBefore} ORDER BY occurred_at LIMIT ${limit})
            RETURNING occurred_at
          ), noted AS (
            INSERT INTO audit_events (type, actor, user_agent, detail)
            SELECT 'audit.pruned', ${by.actor}::text, ${by.userAgent ?? null}::text, jsonb_build_object('deleted', count(*), 'older_than', ${auditBefore}::timestamptz,
              'oldest', min(occurred_at), 'newest', max(occurred_at))
            FROM gone HAVING count(*) > 0
          )
          SELECT count(*) AS deleted FROM gone`.execute(conn)
        return Number(pruned?.deleted ?? 0)
      }, size, maxBatches, signal)
      return {
        ran: true,
        sessions: sessions.deleted,
        refreshTokens: refreshTokens.deleted,
        auditEvents: auditEvents.deleted,
        behind: !sessions.ranOut || !refreshTokens.ranOut || !auditEvents.ranOut
      }
    } finally {
      await sql`SELECT pg_advisory_unlock(${SESSION_CLEANUP_LOCK})`.execute(conn)
    }
  })
}

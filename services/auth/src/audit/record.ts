/**
 * The audit trail: one row per security-relevant event, `noun.verb` types.
 * Never a password or a token: callers pass ids, not secrets.
 * @module
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.js'

export type AuditType =
  | 'login.succeeded' | 'login.failed' | 'login.backed_off'
  | 'user.created' | 'user.disabled' | 'user.enabled' | 'user.unlocked' | 'user.deleted' | 'password.changed' | 'password.change_failed' | 'users.imported' | 'users.import_batch'
  | 'session.ended' | 'refresh.reuse_detected'
  | 'client.created' | 'client.secret_rotated' | 'client.disabled' | 'client.enabled' | 'client.deleted' | 'client.authentication_failed'
  | 'key.created' | 'key.promoted' | 'key.demoted' | 'key.retired' | 'key.deleted' | 'key.revoked' | 'key.private_erased' | 'key.rewrapped'
  | 'audit.pruned'

/** Who asked, from where: carried from the HTTP request or the CLI into the audit row. */
export interface RequestContext {
  ip?: string | undefined
  userAgent?: string | undefined
  requestId?: string | undefined
}

export interface AuditEvent extends RequestContext {
  type: AuditType
  actor?: string | undefined
  userId?: string | undefined
  username?: string | undefined
  sessionId?: string | undefined
  kid?: string | undefined
  detail?: Record<string, string | number | boolean | null>
}

/** Rows per INSERT: a statement takes at most 65,535 parameters, and an event is 10. */
const ROWS_PER_INSERT = 1000

/**
 * Writes one event or many. Many come as one array, not as spread
 * arguments: ending every session of a revoked key can name hundreds of
 * thousands, past what a call's arguments may hold.
 */
export async function recordAudit (db: Db, event: AuditEvent | readonly AuditEvent[]): Promise<void> {
  const events = Array.isArray(event) ? event : [event]
  for (let start = 0; start < events.length; start += ROWS_PER_INSERT) await insertEvents(db, events.slice(start, start + ROWS_PER_INSERT))
}

async function insertEvents (db: Db, events: readonly AuditEvent[]): Promise<void> {
  await db.insertInto('audit_events').values(events.map((event) => ({
    // The time of the write, not the column's default now() (when the
    // transaction began): a change that waited for a row lock is then dated
    // after the events of the transaction it waited for, as its ids are.
    occurred_at: sql<Date>`clock_timestamp()`,
    type: event.type,
    actor: event.actor ?? null,
    user_id: event.userId ?? null,
    username: event.username ?? null,
    session_id: event.sessionId ?? null,
    kid: event.kid ?? null,
    ip: event.ip ?? null,
    user_agent: event.userAgent?.slice(0, 512) ?? null,
    request_id: event.requestId ?? null,
    detail: JSON.stringify(event.detail ?? {})
  }))).execute()
}

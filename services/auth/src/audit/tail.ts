/**
 * The newest audit events, for `tessera audit tail`: optionally those about
 * one user (by username, whether or not the user exists, or by user id).
 * Rows that recorded only a user's id (session ends, reuse, a password
 * change over HTTP) are read with the name that id goes by.
 * @module
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.js'
import { normalizeUsername } from '../passwords/policy.js'
import { UUID_TEXT } from '../util/uuid.js'

export interface AuditRow {
  id: number
  occurredAt: Date
  type: string
  actor: string | null
  userId: string | null
  username: string | null
  sessionId: string | null
  kid: string | null
  ip: string | null
  userAgent: string | null
  requestId: string | null
  detail: Record<string, unknown>
  /** The name of the user the row is about, when the row holds only the id: the user's name now, or (deleted) as another row recorded it. */
  knownAs: string | null
}

/** Oldest first, like `tail`: the last `limit` events. */
export async function tailAudit (db: Db, options: { user?: string | undefined, limit: number }): Promise<AuditRow[]> {
  let query = db.selectFrom('audit_events').selectAll('audit_events').select((eb) => eb.fn.coalesce(
    eb.selectFrom('users').select('users.username').whereRef('users.id', '=', 'audit_events.user_id'),
    eb.selectFrom('audit_events as named').select('named.username').whereRef('named.user_id', '=', 'audit_events.user_id').where('named.username', 'is not', null).orderBy('named.id', 'desc').limit(1)
  ).as('known_as'))
  const user = options.user
  if (user !== undefined) {
    const name = normalizeUsername(user) ?? user.normalize('NFKC').toLowerCase()
    // The ids the name went by: the user's now, and a deleted user's, found
    // through the events that recorded both (user.created, user.deleted), so
    // that their events that kept only the id (session.ended) are found too.
    // An array computed once, not `IN (subquery)` beside an OR: so each side
    // is an index condition (audit_events_username, audit_events_user) and the
    // newest rows are picked from the user's alone, where the planner read
    // every event of the table backwards by id, filtering each (migration 0015).
    query = query.where((eb) => {
      const ids = eb.selectFrom('users').select('id').where('username', '=', name)
        .union(eb.selectFrom('audit_events as named').select('named.user_id as id').where('named.username', '=', name).where('named.user_id', 'is not', null).$narrowType<{ id: string }>())
      const about = [
        eb('username', '=', name),
        eb('user_id', '=', sql<string>`any (array(${ids}))`)
      ]
      if (UUID_TEXT.test(user)) about.push(eb('user_id', '=', user.toLowerCase()))
      return eb.or(about)
    })
  }
  const rows = await query.orderBy('id', 'desc').limit(options.limit).execute()
  return rows.reverse().map((r) => ({
    id: Number(r.id),
    occurredAt: r.occurred_at,
    type: r.type,
    actor: r.actor,
    userId: r.user_id,
    username: r.username,
    sessionId: r.session_id,
    kid: r.kid,
    ip: r.ip,
    userAgent: r.user_agent,
    requestId: r.request_id,
    detail: r.detail,
    knownAs: r.known_as
  }))
}

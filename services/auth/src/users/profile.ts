/**
 * The caller's profile, read together with its session: on Tessera's own
 * routes a token whose session has ended is refused at once (siblings cannot
 * know that and accept it until `exp`).
 * @module
 */
import { CompiledQuery } from 'kysely'
import type { Db } from '../db/database.js'
import { namedStatement } from '../db/named-statements.js'

export interface Profile {
  id: string
  username: string
  createdAt: Date
}

// /v1/me runs this on every request: fixed text, so Kysely compiles nothing per request, and
// sent by name, so each connection has Postgres parse and plan it once (db/named-statements.ts).
export const LIVE_PROFILE_STATEMENT = 'tessera_live_profile'
export const LIVE_PROFILE_SQL = namedStatement(LIVE_PROFILE_STATEMENT, 'select users.id, users.username, users.created_at from users inner join sessions on sessions.user_id = users.id ' +
  'where users.id = $1 and sessions.id = $2 and users.disabled_at is null and sessions.revoked_at is null and sessions.expires_at > $3')

interface ProfileRow { id: string, username: string, created_at: Date }

export async function liveProfile (db: Db, userId: string, sessionId: string, now: Date): Promise<Profile | undefined> {
  const { rows: [row] } = await db.executeQuery<ProfileRow>(CompiledQuery.raw(LIVE_PROFILE_SQL, [userId, sessionId, now]))
  return row === undefined ? undefined : { id: row.id, username: row.username, createdAt: row.created_at }
}

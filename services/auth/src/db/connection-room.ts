/**
 * How many connections this connection's role may open on its database:
 * what Postgres lets in before it refuses the next with 53300 ("too many
 * connections"). The start holds its instance's connections against it
 * (cluster/pool.ts).
 * @module
 */
import { sql } from 'kysely'
import type { Db } from './database.js'

export interface ConnectionRoom {
  limit: number
  /** Which setting sets `limit`: the server's slots, the role's CONNECTION LIMIT, or the database's. */
  bound: 'server' | 'role' | 'database'
  /** The numbers behind `limit`, as an operator would look them up. */
  because: string
  role: string
  database: string
}

interface Settings {
  max_connections: number
  superuser_reserved: number
  reserved: number
  superuser: boolean
  role_limit: number
  database_limit: number
  role: string
  database: string
}

/**
 * One query. A superuser may take every slot and is held to neither
 * CONNECTION LIMIT; any other role is kept out of the last
 * superuser_reserved_connections and, from Postgres 16, reserved_connections
 * (counted here as if the role lacked pg_use_reserved_connections, which
 * Tessera's does). -1 is "no limit" for a role or a database.
 */
export async function connectionRoom (db: Db): Promise<ConnectionRoom> {
  const { rows } = await sql<Settings>`SELECT current_setting('max_connections')::int AS max_connections,
      current_setting('superuser_reserved_connections')::int AS superuser_reserved,
      coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
      r.rolsuper AS superuser, r.rolconnlimit AS role_limit, d.datconnlimit AS database_limit,
      r.rolname AS role, d.datname AS database
    FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()`.execute(db)
  const s = rows[0]
  if (s === undefined) throw new Error('could not read this role\'s connection limits from pg_roles and pg_database')
  const { role, database } = s
  if (s.superuser) return { limit: s.max_connections, bound: 'server', because: `max_connections ${s.max_connections}, as a superuser`, role, database }
  const reserved = s.reserved > 0 ? ` − reserved_connections ${s.reserved}` : ''
  const bounds: ConnectionRoom[] = [{
    limit: s.max_connections - s.superuser_reserved - s.reserved,
    bound: 'server',
    because: `max_connections ${s.max_connections} − superuser_reserved_connections ${s.superuser_reserved}${reserved}`,
    role,
    database
  }]
  if (s.role_limit >= 0) bounds.push({ limit: s.role_limit, bound: 'role', because: `the role's CONNECTION LIMIT ${s.role_limit}`, role, database })
  if (s.database_limit >= 0) bounds.push({ limit: s.database_limit, bound: 'database', because: `database ${database}'s CONNECTION LIMIT ${s.database_limit}`, role, database })
  return bounds.reduce((least, next) => next.limit < least.limit ? next : least)
}

/**
 * One pg Pool and the Kysely instance over it.
 * @module
 */
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import type { Database, Db } from './database.js'
import { namingPool } from './named-statements.js'

// Postgres returns bigint (int8) as text by default; counts and ids we read fit in a double.
pg.types.setTypeParser(pg.types.builtins.INT8, (value: string) => Number(value))

export interface Connection {
  db: Db
  pool: pg.Pool
  close: () => Promise<void>
}

export interface ConnectOptions {
  /**
   * Postgres's statement_timeout on each connection, in ms (absent or 0:
   * none). Set by a `SET` on connect, node-postgres's own place for
   * per-connection setup, rather than as a startup parameter, which a
   * connection pooler such as PgBouncer refuses by default.
   */
  statementTimeoutMs?: number
}

/**
 * How much longer than the statement timeout a statement's answer may take
 * before its connection is dropped (namingPool): past the timeout a live
 * server answers at once with its cancellation, so only a silent one is cut,
 * and at a request's largest timeout (25 s) still before the 30 s the server
 * and the gateway wait for an answer.
 */
const ANSWER_MARGIN_MS = 2000

export function connect (connectionString: string, max = 10, options: ConnectOptions = {}): Connection {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5000 })
  const statementTimeoutMs = options.statementTimeoutMs ?? 0
  // An idle client that loses its server (a database restart) emits here; without a
  // listener that would crash the process. The pool replaces the client on next use.
  pool.on('error', () => {})
  // A client that loses its server while checked out (mid-transaction, or between
  // a transaction's statements) emits 'error' with no pool listener attached, which
  // would also crash the process. Its query already fails with that error, and the
  // pool discards the client on release, so nothing else needs doing.
  pool.on('connect', (client) => {
    client.on('error', () => {})
    // Queued ahead of the first query of whoever asked for the connection. Should it fail, that query fails the same way.
    if (statementTimeoutMs > 0) client.query(`SET statement_timeout = ${statementTimeoutMs}`).catch(() => {})
  })
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: namingPool(pool, statementTimeoutMs > 0 ? statementTimeoutMs + ANSWER_MARGIN_MS : 0) }) })
  let closed = false
  return {
    db,
    pool,
    close: async () => {
      if (closed) return
      closed = true
      await db.destroy()
    }
  }
}

/** One trivial statement, for readiness: resolves when the database answers now. */
export async function pingDatabase (db: Db): Promise<void> {
  await sql`SELECT 1`.execute(db)
}

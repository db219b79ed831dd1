/**
 * One pg Pool and the Kysely instance over it.
 * @module
 */
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import type { Database, Db } from './database.js'
import { cutUnanswered, namingPool } from './named-statements.js'
import { postgresClientConfig, tlsReadingClient } from './tls.js'

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
   * none, and the role's or database's own applies: the CLI's and the
   * primary's migrations). Where set, lock_timeout is 0: the statement
   * timeout bounds a lock wait too (sessionSetup).
   */
  statementTimeoutMs?: number
  /** How long a connection serves before the pool closes it, once idle, and opens a new one when needed; CONNECTION_LIFETIME_S by default. */
  lifetimeSeconds?: number
}

/**
 * A connection's life in a pool: an hour (pgx's default; HikariCP's is 30
 * minutes). Without one a busy pool kept its connections for the process's
 * life: TLS files rotated on disk were read by no connection until a
 * restart or `pg_terminate_backend` (each new one reads them: tlsReadingClient),
 * connections stayed on one server behind a pooler or a load balancer
 * that had since gained others, and a backend's caches grew for days.
 * A connection is closed only while idle; each has its own hour from when
 * it opened, and a pool of 10 reconnects 10 times an hour.
 */
const CONNECTION_LIFETIME_S = 3600

/**
 * What Tessera's statements rely on, set on every connection whatever a DBA
 * made the server's, the database's or the role's default (ALTER DATABASE
 * or ROLE … SET), by a `SET` on connect, node-postgres's own place for
 * per-connection setup, rather than as a startup parameter, which a
 * connection pooler such as PgBouncer refuses by default:
 * - search_path: Tessera's tables are in `public` (`db roles` gives the
 *   owner that schema). A schema named after the role ("$user", first by
 *   default) took `migrate up`'s tables, which the runtime role then did not
 *   find; a schema of the same table names ahead of public would be read.
 * - DateStyle ISO: node-postgres parses only ISO dates; under 'SQL, DMY' or
 *   'German' every timestamp read as null and the instance could not start.
 * - extra_float_digits 1 (Postgres 12's default, every digit): below 0 a
 *   float8 is rounded, and a client's previous secret, which expires at a
 *   float8 in ms (clients/authenticate.ts), read at -15 as 2e+12, 2033.
 * - read committed: the refresh grant, the login and every change rest on
 *   a row lock's wait ending in the row as committed (decisions.md, "A DBA's
 *   database settings"); under repeatable read or serializable a racing tab
 *   was answered 503 (40001) instead of its successor.
 * - with a statement timeout (the workers, the primary's jobs), lock_timeout
 *   0: racing refreshes of one session wait on its row lock by design, and a
 *   short lock_timeout answered them 500.
 * - jit off: every statement Tessera sends is short, but some are estimated
 *   past jit_above_cost (100,000 by default), and a Postgres built with LLVM
 *   (Debian's and most distributions' packages; not the embedded one, so no
 *   test saw it) compiled them for far longer than they ran: `users
 *   import`'s batches ~1.5 s each for ~30 ms, and the key step's erase and
 *   delete, at 5M refresh tokens, 6–57 ms each for 0.03 ms, on every
 *   instance every TESSERA_KEY_CHECK_INTERVAL (~230 ms each at three times
 *   the tokens, where inlining and optimization start). The statements
 *   whose run JIT could shorten end a client's or a key's sessions in bulk,
 *   seconds of writes it does not speed up. docs/decisions.md, "No JIT".
 * TimeZone, IntervalStyle and client_encoding are left as they are: nothing
 * Tessera reads depends on the first two, and node-postgres asks for UTF8.
 */
function sessionSetup (statementTimeoutMs: number): string {
  const settings = ['search_path = public', 'DateStyle = ISO', 'extra_float_digits = 1', "default_transaction_isolation = 'read committed'", 'jit = off']
  if (statementTimeoutMs > 0) settings.push(`statement_timeout = ${statementTimeoutMs}`, 'lock_timeout = 0')
  return settings.map((setting) => `SET ${setting}`).join('; ')
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
  // 5 s unless DATABASE_URL's connect_timeout says: pg-pool bounds both a new connection and the wait for a free one by it.
  // Each new connection reads DATABASE_URL's TLS files again (tlsReadingClient), as libpq does; the files are checked here first.
  const statementTimeoutMs = options.statementTimeoutMs ?? 0
  const setup = sessionSetup(statementTimeoutMs)
  const answerWithinMs = statementTimeoutMs > 0 ? statementTimeoutMs + ANSWER_MARGIN_MS : 0
  const pool = new pg.Pool({
    connectionTimeoutMillis: 5000,
    ...postgresClientConfig(connectionString),
    Client: tlsReadingClient(connectionString),
    max,
    maxLifetimeSeconds: options.lifetimeSeconds ?? CONNECTION_LIFETIME_S,
    // Awaited before the connection is handed out: queued behind its first
    // query instead, it was pg's "already executing a query" deprecation
    // (removed in pg 9), which pool.query printed (the bench's fixtures).
    // Should it fail, the connection is closed and whoever asked for it gets
    // that error: a server silent from the setup on is the database out of
    // reach, as it is from any later statement.
    onConnect: async (client) => {
      const answer = client.query(setup)
      cutUnanswered(client, answer, answerWithinMs)
      await answer
    }
  })
  // An idle client that loses its server (a database restart) emits here; without a
  // listener that would crash the process. The pool replaces the client on next use.
  pool.on('error', () => {})
  // A client that loses its server while checked out (mid-transaction, or between
  // a transaction's statements) emits 'error' with no pool listener attached, which
  // would also crash the process. Its query already fails with that error, and the
  // pool discards the client on release, so nothing else needs doing.
  pool.on('connect', (client) => {
    client.on('error', () => {})
  })
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: namingPool(pool, answerWithinMs) }) })
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

/**
 * One trivial statement, for readiness: resolves when the database answers
 * now, to whether it takes writes. `transaction_read_only` is on in a hot
 * standby (a failover that left DATABASE_URL on the old primary, now a
 * replica) and under a DBA's `default_transaction_read_only`, where every
 * login, refresh and sign-up is refused.
 */
export async function databaseTakesWrites (db: Db): Promise<boolean> {
  const { rows } = await sql<{ read_only: string }>`SELECT current_setting('transaction_read_only') AS read_only`.execute(db)
  return rows[0]?.read_only === 'off'
}

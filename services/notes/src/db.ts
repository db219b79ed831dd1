/**
 * The notes schema: its own Postgres schema and migration table, so it can
 * share a server with Tessera and never touch Tessera's tables. Migrations run
 * at start; Kysely's migrator lock makes concurrent starts safe.
 * @module
 */
import type { Socket } from 'node:net'
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely'
import { Migrator, type Migration } from 'kysely/migration'
import pg from 'pg'

export interface NotesTable {
  id: Generated<string>
  owner: string
  text: string
  created_at: Generated<Date>
}

export interface Database { 'notes.notes': NotesTable }
export type Db = Kysely<Database>

const MIGRATIONS: Record<string, Migration> = {
  '0001_notes': {
    async up (db) {
      await db.schema.createTable('notes.notes')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('text', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute()
      await db.schema.createIndex('notes_owner_created').on('notes.notes').columns(['owner', 'created_at']).execute()
    },
    async down (db) {
      await db.schema.dropTable('notes.notes').execute()
    }
  }
}

/**
 * The longest a statement may run (Postgres's statement_timeout): well under
 * the 30 s a request may take, so a request is answered, not dropped.
 */
const STATEMENT_TIMEOUT_MS = 10_000

/**
 * How much longer than the statement timeout a connection may stay without a
 * word from the server before it is dropped. A live server answers by then,
 * if only with its cancellation; one gone silent (a failover that left the
 * old address unanswering, a partition, a frozen host) never does, and TCP
 * alone would hold the request and its pool slot for about 15 minutes.
 */
const ANSWER_MARGIN_MS = 2000

/**
 * What notes' routes rely on, set on each connection whatever a DBA made the
 * database's or role's default (ALTER DATABASE|ROLE … SET), as Tessera's
 * db/connect.ts does:
 * - DateStyle ISO: node-postgres parses only ISO dates; under 'SQL, DMY'
 *   created_at read as null, and every GET and POST /notes answered 500.
 * - read committed: a DELETE that waited for a note another transaction
 *   deleted finds it gone (404); under repeatable read or serializable it
 *   failed with 40001, a 500.
 * - lock_timeout 0: the statement timeout bounds a lock wait as it bounds
 *   everything else; a 50 ms lock_timeout answered a DELETE waiting for a
 *   note's row 500 (55P03).
 */
function sessionSetup (statementTimeoutMs: number): string {
  return [`statement_timeout = ${statementTimeoutMs}`, 'lock_timeout = 0', 'DateStyle = ISO', "default_transaction_isolation = 'read committed'"]
    .map((setting) => `SET ${setting}`).join('; ')
}

export function connect (databaseUrl: string, statementTimeoutMs = STATEMENT_TIMEOUT_MS): Db {
  const answerWithinMs = statementTimeoutMs + ANSWER_MARGIN_MS
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: 10,
    connectionTimeoutMillis: 5000,
    // Awaited before the connection is handed out, as Tessera's db/connect.ts
    // does: queued behind the first query, it was what pg deprecates ("already
    // executing a query", removed in pg 9), though Kysely asked late enough not
    // to be warned. Should it fail, the connection is closed and whoever asked
    // for it gets that error.
    onConnect: async (client) => {
      // pg's own query_timeout is not this: it leaves the connection waiting
      // and returns it to the pool. A destroyed socket fails the query with
      // this error (a 503), and the pool discards the client. Idle, the pool
      // closes a connection after 10 s, before this can fire.
      const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream
      socket.setTimeout(answerWithinMs, () => {
        socket.destroy(Object.assign(new Error(`the database did not answer within ${answerWithinMs} ms`), { code: 'ETIMEDOUT' }))
      })
      // A SET rather than a startup parameter, which PgBouncer refuses by default.
      await client.query(sessionSetup(statementTimeoutMs))
    }
  })
  // An idle client that loses its server emits on the pool; one checked out
  // (between a transaction's statements) emits on itself, with no listener
  // unless we add one, and would crash the process. Its work already fails
  // with that error and the pool discards it on release.
  pool.on('error', () => {})
  pool.on('connect', (client) => {
    client.on('error', () => {})
  })
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
}

export async function migrate (db: Db): Promise<void> {
  const migrator = new Migrator({
    db,
    migrationTableSchema: 'notes',
    provider: { getMigrations: async () => MIGRATIONS }
  })
  const { error } = await migrator.migrateToLatest()
  if (error !== undefined) throw error instanceof Error ? error : new Error(String(error))
}

/**
 * Whether the database takes writes: `transaction_read_only` is on in a hot
 * standby and under a DBA's `default_transaction_read_only`, where every POST
 * and DELETE is refused (25006). As Tessera's db/connect.ts asks it.
 */
export async function databaseTakesWrites (db: Db): Promise<boolean> {
  const { rows } = await sql<{ read_only: string }>`SELECT current_setting('transaction_read_only') AS read_only`.execute(db)
  return rows[0]?.read_only === 'off'
}

/**
 * Postgres out of reach for a moment: no connection to be had (refused, no
 * socket file, the pool's wait run out, a pooler such as PgBouncer full, a
 * host name that no longer resolves), one lost or gone silent, the server
 * starting, stopping or full (of connections, disk or memory), or a statement
 * it cancelled at the statement timeout (57014); or Postgres refusing the
 * connection (a rotated password 28P01, pg_hba.conf or NOLOGIN 28000, a
 * dropped database 3D000) or every write (25006: a hot standby after a
 * failover, or read-only for maintenance). The request did nothing and a
 * retry may work once the operator acts, so it is a 503, not a fault, as
 * Tessera's errors.ts has it.
 */
const OUT_OF_REACH = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND',
  '08000', '08001', '08003', '08004', '08006', '57014', '57P01', '57P02', '57P03',
  '53000', '53100', '53200', '53300', '53400', '40001', '40P01', '25006', '28P01', '28000', '3D000'
])

/** Postgres, reached, refusing who connects or to what: a wrong password (28P01), pg_hba.conf or NOLOGIN (28000), an unknown database (3D000). */
const CONNECTION_REFUSED = new Set(['28P01', '28000', '3D000'])
/** Reached, and what Postgres said is the whole story (full, a conflict, cancelled, read-only): not "cannot reach". */
const REACHED = new Set(['53000', '53100', '53200', '53400', '40001', '40P01', '57014', '25006'])

/**
 * The one line a start that could not use its database prints, worded as
 * Tessera's (errors.ts databaseUnreachable): pg's own error read
 * `failed to start: error: password authentication failed …`, its class
 * name lower case. Undefined for any other error.
 */
export function databaseStartFailure (err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined
  const { code } = err as Error & { code?: unknown }
  if (typeof code === 'string' && CONNECTION_REFUSED.has(code)) return `the database refused the connection: ${err.message}`
  if (typeof code === 'string' && REACHED.has(code)) return undefined
  return isDatabaseOutOfReach(err) ? `cannot reach the database: ${err.message}` : undefined
}

export function isDatabaseOutOfReach (err: unknown): boolean {
  if (!(err instanceof Error)) return false
  const { code, syscall, severity } = err as Error & { code?: unknown, syscall?: unknown, severity?: unknown }
  // ENOENT only on connect: a Unix socket a stopped server removed, not some missing file.
  // 08P01 only as FATAL: PgBouncer's refusal (max_client_conn, server_login_retry), where an ERROR is Postgres refusing one message.
  return (typeof code === 'string' && (OUT_OF_REACH.has(code) || (code === 'ENOENT' && syscall === 'connect') || (code === '08P01' && severity === 'FATAL'))) ||
    err.message === 'timeout exceeded when trying to connect' || err.message === 'Connection terminated unexpectedly'
}

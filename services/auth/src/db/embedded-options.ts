/**
 * How the embedded Postgres is started and reached (db/embedded.ts): its
 * command-line options and its connection strings. Apart from embedded.ts so
 * that they are tested in process without loading the code that spawns
 * Postgres.
 * @module
 */
import path from 'node:path'

export const DB_USER = 'tessera'

/** The longest socket path the kernel takes (sun_path is 108 bytes on Linux), with room to spare. */
const MAX_SOCKET_PATH = 100

/** max_connections when the instance's connections fit in it: what initdb's postgresql.conf has said since the first release. */
export const EMBEDDED_MAX_CONNECTIONS = 200
/**
 * Above what the instance holds: a few `tessera` commands (4 connections
 * each) and a psql session. 200 left 10 for them at 46 workers; this keeps
 * more for every count of workers past that.
 */
const COMMAND_ROOM = 24

/**
 * max_connections for an instance that may hold `connections` at once
 * (cluster/pool.ts): 200, or enough for them when they need more. Given at
 * every start (serverOptions), so a cluster initialised with 200 gets it too.
 */
export function embeddedMaxConnections (connections: number): number {
  return Math.max(EMBEDDED_MAX_CONNECTIONS, connections + COMMAND_ROOM)
}

/**
 * The server's command-line options: its port, its max_connections
 * (embeddedMaxConnections; a -c option outranks postgresql.conf), and a Unix socket in its own
 * data directory, which only the postgres user (and root) may enter. Over
 * the socket a query costs both sides less kernel time than over TCP on
 * loopback (docs/decisions.md, "A Unix socket to the embedded Postgres").
 * No socket when the path would be too long for one or would need quoting
 * in pg_ctl's command line: TCP alone then, as before.
 */
export function serverOptions (pgdata: string, port: number, maxConnections = EMBEDDED_MAX_CONNECTIONS): string {
  const socketFile = path.join(pgdata, `.s.PGSQL.${port}`)
  const socketable = /^[\w/.-]+$/.test(pgdata) && Buffer.byteLength(socketFile) <= MAX_SOCKET_PATH
  const options = `-p ${port} -c max_connections=${maxConnections}`
  return socketable ? `${options} -k ${pgdata}` : options
}

/** The connection string of `database`: through the Unix socket when the server has one, else TCP on loopback. */
export function embeddedUrl (password: string, port: number, socketDir: string, database: string): string {
  const base = `postgres://${DB_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`
  // libpq and node-pg both let `host` in the query name a socket directory; the port names the socket file.
  return socketDir === '' ? base : `${base}?host=${encodeURIComponent(socketDir)}`
}

/**
 * The port in a cluster's `postmaster.opts` (the command line Postgres last
 * started with, which it leaves in the data directory when it stops), if
 * any: a restart takes the same port when it is free, so the cluster's URL
 * stays the same and a running instance finds its Postgres again.
 */
export function portInPostmasterOpts (opts: string): number | undefined {
  const port = Number(/"-p" "(\d+)"/.exec(opts)?.[1])
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined
}

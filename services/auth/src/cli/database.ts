/**
 * The database a command works on, opened when the command first asks for
 * it (main.ts's `connection`): the one DATABASE_URL names, or the embedded
 * Postgres this checkout has started.
 * @module
 */
import type { Config } from '../config.js'
import { connect, type Connection } from '../db/connect.js'
import { embeddedClusterExists } from '../db/embedded.js'
import { databaseFor } from '../db/locate.js'
import { instanceConnections } from '../cluster/pool.js'
import { CliError } from './output.js'

/** Opens the configured database; never creates a local one the operator did not ask for. */
export async function openDatabase (config: Config): Promise<{ connection: Connection, stop: () => Promise<void> }> {
  if (config.databaseUrl === undefined) {
    if (!(await embeddedClusterExists(config.dataDir))) {
      throw new CliError(`DATABASE_URL is unset and no embedded Postgres has been started from this checkout (none under ${config.dataDir}): set DATABASE_URL to the database to operate on, or run \`tessera db start\` to make a local one`)
    }
    process.stderr.write(`tessera: using the embedded Postgres under ${config.dataDir} (DATABASE_URL is unset)\n`)
  }
  const { url, embedded } = await databaseFor({ ...config, connections: instanceConnections(config.workers) })
  const connection = connect(url, 4)
  return { connection, stop: async () => { await connection.close(); await embedded?.stop() } }
}

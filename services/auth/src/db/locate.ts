/**
 * Which Postgres to use: DATABASE_URL when set, otherwise the embedded one
 * under the data directory. Kept apart from runtime.ts so the CLI can open the
 * database without loading the HTTP app.
 * @module
 */
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js'

/**
 * Where the database is, as config.ts reads it (DATABASE_URL, TESSERA_DATA_DIR).
 * Its own shape, not a Pick of Config: config.ts imports audit/, which imports
 * db/, so a type import of config.ts here would close a folder cycle.
 */
export interface DatabaseLocation {
  databaseUrl: string | undefined
  dataDir: string
  /** The most connections the caller may hold at once: an embedded Postgres it starts is sized for them (db/embedded.ts). */
  connections?: number
}

export async function databaseFor (config: DatabaseLocation): Promise<{ url: string, embedded: EmbeddedPostgres | undefined }> {
  if (config.databaseUrl !== undefined) return { url: config.databaseUrl, embedded: undefined }
  const embedded = await startEmbeddedPostgres(config.dataDir, config.connections)
  return { url: embedded.url, embedded }
}

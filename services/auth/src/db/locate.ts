/**
 * Which Postgres to use: DATABASE_URL when set, otherwise the embedded one
 * under the data directory. Kept apart from runtime.ts so the CLI can open the
 * database without loading the HTTP app.
 * @module
 */
import type { Config } from '../config.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js'

export async function databaseFor (config: Pick<Config, 'databaseUrl' | 'dataDir'>): Promise<{ url: string, embedded: EmbeddedPostgres | undefined }> {
  if (config.databaseUrl !== undefined) return { url: config.databaseUrl, embedded: undefined }
  const embedded = await startEmbeddedPostgres(config.dataDir)
  return { url: embedded.url, embedded }
}

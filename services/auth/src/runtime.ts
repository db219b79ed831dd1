/**
 * Composes a running Tessera from a validated config: database (embedded when
 * no DATABASE_URL), KEK, keyring, first key, background jobs, HTTP app. The
 * process entry (server.ts) adds only signals and listen.
 * @module
 */
import type { Logger } from 'pino'
import { buildApp, type App } from './app.js'
import type { Config } from './config.js'
import { connect, type Connection } from './db/connect.js'
import type { EmbeddedPostgres } from './db/embedded.js'
import { databaseFor } from './db/locate.js'
import { migrateUp, migrationStatus } from './db/migrate.js'
import { resolveKek } from './keys/kek.js'
import { Keyring } from './keys/keyring.js'
import { ensureSigningKey } from './keys/ensure.js'
import { loadKeyring, logRejectedKey } from './keys/load.js'
import { createMetrics } from './metrics/metrics.js'
import { ensureDefaultClient } from './clients/register.js'
import { PasswordHasher } from './passwords/hasher.js'
import { startBackgroundJobs, type BackgroundJobs } from './jobs.js'

export interface Runtime {
  app: App
  connection: Connection
  keyring: Keyring
  embedded: EmbeddedPostgres | undefined
  /** Stops background jobs, closes the app (in-flight requests finish), the pool, the embedded server. */
  close: () => Promise<void>
}

/** Startup failures an operator can act on: printed as one line, exit 1. */
export class StartupError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StartupError'
  }
}

async function requireSchema (connection: Connection, migrate: boolean): Promise<void> {
  if (migrate) {
    await migrateUp(connection.db)
    return
  }
  const pending = (await migrationStatus(connection.db)).filter((m) => m.appliedAt === null)
  if (pending.length > 0) throw new StartupError(`the database schema is behind (${pending.map((m) => m.name).join(', ')} pending): run \`tessera migrate up\``)
}

export async function startRuntime (config: Config, logger: Logger, clock: () => Date = () => new Date()): Promise<Runtime> {
  const { url, embedded } = await databaseFor(config)
  const connection = connect(url, 20)
  try {
    await requireSchema(connection, embedded !== undefined)
    const kek = await resolveKek(config.kek, config.dataDir)
    const keyring = new Keyring()
    const created = await ensureSigningKey(connection.db, kek, config.keyBits, clock())
    if (created !== undefined) logger.info({ kid: created }, 'created the first signing key')
    await loadKeyring(connection.db, kek, keyring, { onRejectedKey: logRejectedKey(logger) })
    if (await ensureDefaultClient(connection.db, config, clock())) logger.info({ client_id: config.defaultClientId }, 'registered the default public client')
    const hasher = new PasswordHasher({ concurrency: config.hashConcurrency, depth: config.hashQueueDepth })
    const metrics = createMetrics({ hasher, keyring, pool: connection.pool })
    const jobs: BackgroundJobs = await startBackgroundJobs({ config, db: connection.db, databaseUrl: url, pool: connection.pool, keyring, kek, logger, clock })
    const app = await buildApp(config, { db: connection.db, logger, keyring, hasher, metrics, clock })
    return {
      app,
      connection,
      keyring,
      embedded,
      close: async () => {
        await jobs.stop()
        await app.close()
        await connection.close()
        await embedded?.stop()
      }
    }
  } catch (err) {
    await connection.close()
    await embedded?.stop()
    throw err
  }
}

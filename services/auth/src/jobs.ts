/**
 * Background work every instance runs: keeping the keyring in step with the
 * database. Key lifecycle timers and cleanup join here.
 * @module
 */
import type pg from 'pg'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import type { Db } from './db/database.js'
import type { Keyring } from './keys/keyring.js'
import { loadKeyring } from './keys/load.js'
import { cleanupExpired } from './sessions/cleanup.js'

export interface JobDeps {
  config: Config
  db: Db
  pool: pg.Pool
  keyring: Keyring
  kek: Buffer
  logger: Logger
  clock: () => Date
}

export interface BackgroundJobs {
  stop: () => Promise<void>
}

export async function startBackgroundJobs (deps: JobDeps): Promise<BackgroundJobs> {
  const reload = setInterval(() => {
    loadKeyring(deps.db, deps.kek, deps.keyring).catch((err: unknown) => deps.logger.warn({ err }, 'keyring reload failed'))
  }, deps.config.keyCheckInterval * 1000)
  reload.unref()

  const cleanup = setInterval(() => {
    cleanupExpired(deps.db, { now: deps.clock(), revokedRetention: deps.config.revokedRetention })
      .then((result) => { if (result.sessions + result.refreshTokens > 0) deps.logger.info(result, 'cleanup deleted expired rows') })
      .catch((err: unknown) => deps.logger.warn({ err }, 'cleanup failed'))
  }, deps.config.cleanupInterval * 1000)
  cleanup.unref()

  return {
    stop: async () => {
      clearInterval(reload)
      clearInterval(cleanup)
    }
  }
}

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
import { pruneLoginThrottle } from './sessions/login-throttle.js'

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

// --- login back-off cleanup (abuse resistance) ---------------------------
/** Forgets failure streaks older than the longest back-off and caps the table; one instance at a time. */
function startThrottleCleanup (deps: JobDeps): NodeJS.Timeout {
  const timer = setInterval(() => {
    pruneLoginThrottle(deps.db, deps.clock(), { max: deps.config.loginBackoffMax, maxRows: deps.config.loginThrottleMaxRows })
      .then((deleted) => { if (deleted !== undefined && deleted > 0) deps.logger.info({ deleted }, 'pruned login back-off rows') })
      .catch((err: unknown) => deps.logger.warn({ err }, 'login back-off cleanup failed'))
  }, deps.config.cleanupInterval * 1000)
  timer.unref()
  return timer
}
// --------------------------------------------------------------------------

export async function startBackgroundJobs (deps: JobDeps): Promise<BackgroundJobs> {
  const throttleCleanup = startThrottleCleanup(deps)
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
      clearInterval(throttleCleanup)
    }
  }
}

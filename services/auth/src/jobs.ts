/**
 * Background work every instance runs: keeping the keyring in step with the
 * database (LISTEN/NOTIFY within a second, a periodic reload as a backstop)
 * and driving the key lifecycle (keys/advance.ts) on a timer. Every instance
 * runs the same timer; Postgres serializes them, so each transition happens
 * once however many instances run. Also the periodic cleanup of expired
 * sessions, refresh tokens and stale login back-off rows. In a served
 * instance the primary runs these once and tells its HTTP workers of every
 * reload (`onReload`), so each worker reloads its own keyring too, and of
 * every client change (`clientChanges`), so each worker's client rows in
 * memory stay true.
 *
 * The key work (reloads and lifecycle steps) runs on connections of its own,
 * whose statements are bounded as the HTTP workers' are: a server gone silent
 * (a failover that left the old address unanswering, a partition, a frozen
 * host) otherwise held a reload or a step for TCP's ~15 minutes, every later
 * reload joining it and the workers told of none, and the key timer stopped.
 * Cleanup runs on a connection of its own too, with a longer bound
 * (CLEANUP_STATEMENT_TIMEOUT_MS): a batch the silence caught held the run,
 * every later one and stop() (which waits for the batch in flight) as long;
 * now it fails as a run does, logged and counted, and the next run connects
 * afresh.
 *
 * Cleanup runs at start, then every TESSERA_CLEANUP_INTERVAL; a run that
 * stopped at its batch cap (rows still due) is followed by another after
 * CLEANUP_CATCH_UP_PAUSE_MS, until one finds less than its cap of every kind.
 * One run of 100 batches of 1,000 per interval is 167 rows/s, less than an
 * instance's refreshes write at peak (decisions.md, "Cleanup catches up").
 * @module
 */
import type { Logger } from 'pino'
import type { Config } from './config.js'
import type { Db } from './db/database.js'
import { connect } from './db/connect.js'
import { CLEANUP_POOL, KEY_POOL } from './cluster/pool.js'
import { loggedError } from './errors.js'
import { advanceKeys } from './keys/advance.js'
import type { Keyring } from './keys/keyring.js'
import { loadKeyring, logRejectedKey, logWrongKek, WRONG_KEK_REMEDY } from './keys/load.js'
import { WrongKekError } from './keys/kek.js'
import { listenForChanges } from './db/listen.js'
import { KEYS_CHANNEL } from './keys/transitions.js'
import { CLIENTS_CHANNEL } from './clients/cache.js'
import { CLEANUP_BATCH_SIZE, CLEANUP_MAX_BATCHES, cleanupExpired } from './sessions/cleanup.js'
import { singleFlight } from './util/single-flight.js'
import { pruneLoginThrottle } from './passwords/login-throttle.js'
import type { Metrics } from './metrics/metrics.js'

export interface JobDeps {
  config: Config
  databaseUrl: string
  keyring: Keyring
  kek: Buffer
  logger: Logger
  clock: () => Date
  /** Counts each failed run, so an operator can alert on jobs that keep failing; and the key work's and cleanup's connections, in the pool gauges. */
  metrics: Pick<Metrics, 'jobFailed' | 'countPool' | 'cleanedUp'>
  /** Called whenever the keyring reloads, with why. */
  onReload?: (why: string) => void
  /** Told of each client whose row changed (clients/cache.ts), and whether such changes are heard at all right now. */
  clientChanges?: { changed: (clientId: string) => void, heard: (live: boolean) => void }
  /** The key work's statement timeout, in ms; its statements are short, so KEY_STATEMENT_TIMEOUT_MS. */
  keyStatementTimeoutMs?: number
  /** Cleanup's statement timeout, in ms: CLEANUP_STATEMENT_TIMEOUT_MS. */
  cleanupStatementTimeoutMs?: number
  /** One cleanup run's bound, per kind: batches of `batchSize` rows, at most `maxBatches` of them (CLEANUP_BATCH_SIZE, CLEANUP_MAX_BATCHES). */
  cleanupBatches?: { batchSize: number, maxBatches: number }
}

/**
 * A key reload or lifecycle step reads or writes a handful of rows: a statement
 * of it still running after this has met a lock or a sick server, and fails
 * (to be retried by the next reload or tick) rather than wait.
 */
export const KEY_STATEMENT_TIMEOUT_MS = 10_000
/**
 * A cleanup batch deletes at most 1,000 rows it finds through an index, a
 * session's refresh tokens included (deleted before it, sessions/cleanup.ts):
 * milliseconds, unless something is in its way. A row lock a request holds
 * is let go within TESSERA_DB_STATEMENT_TIMEOUT_MS a statement (10 s by
 * default, at most 25 s), and 30 s outlasts that. A batch still running after
 * it has met an operator's long transaction or a sick server: its run fails, logged and counted,
 * and the next is tried at the interval (for a backlog the job keeps failing
 * on, `tessera cleanup`, which has no bound). Not longer: stop() waits for the
 * batch in flight, and the primary's drain is forced at 30 s.
 */
export const CLEANUP_STATEMENT_TIMEOUT_MS = 30_000
/**
 * After a run that left rows due, the next starts this much later rather
 * than a whole interval: the lock is free and the database idle from cleanup
 * meanwhile, so requests and other instances' work are not crowded out.
 */
export const CLEANUP_CATCH_UP_PAUSE_MS = 2000
/** A failed keyring reload is tried again after this, doubling up to the last (or the backstop's interval, when shorter). */
const RELOAD_RETRY_FIRST_MS = 1000
const RELOAD_RETRY_MAX_MS = 16_000

export interface BackgroundJobs {
  /** Reloads the keyring now, and tells the workers why (coalescing concurrent calls). */
  reloadKeys: (why: string) => Promise<void>
  stop: () => Promise<void>
}

const MIN_KEY_TICK = 0.25

/**
 * How often the key timer looks for due transitions: the check interval, but
 * never coarser than a quarter of the publish lead or rotation period or half
 * the refresh grace, so short settings (tests, demos) still move on time.
 * A transition is never early, only up to one tick late.
 */
export function keyTickSeconds (config: Pick<Config, 'keyCheckInterval' | 'keyPublishLead' | 'keyRotation' | 'refreshGrace'>): number {
  const bounds = [config.keyCheckInterval, config.keyPublishLead / 4, (config.keyRotation ?? Infinity) / 4, config.refreshGrace / 2]
  return Math.max(MIN_KEY_TICK, Math.min(...bounds.filter((s) => s > 0)))
}

/**
 * Deletes what expired: sessions, refresh tokens and audit events past their
 * retention, then back-off streaks older than the longest back-off. Says
 * whether it stopped at its cap of some kind, with rows still due.
 */
async function cleanup (deps: JobDeps, db: Db, signal: AbortSignal): Promise<boolean> {
  const { config, logger, metrics } = deps
  const { batchSize, maxBatches } = deps.cleanupBatches ?? { batchSize: CLEANUP_BATCH_SIZE, maxBatches: CLEANUP_MAX_BATCHES }
  const result = await cleanupExpired(db, { now: deps.clock(), revokedRetention: config.revokedRetention, auditRetention: config.auditRetention, batchSize, maxBatches, signal })
  const deleted = { sessions: result.sessions, refreshTokens: result.refreshTokens, auditEvents: result.auditEvents }
  metrics.cleanedUp('sessions', result.sessions)
  metrics.cleanedUp('refresh_tokens', result.refreshTokens)
  metrics.cleanedUp('audit_events', result.auditEvents)
  if (result.sessions + result.refreshTokens + result.auditEvents > 0) logger.info(deleted, 'cleanup deleted expired rows')
  const pruned = await pruneLoginThrottle(db, deps.clock(), { max: config.loginBackoffMax, maxRows: config.loginThrottleMaxRows, batch: batchSize, maxBatches, signal }) ?? 0
  metrics.cleanedUp('login_throttle', pruned)
  if (pruned > 0) logger.info({ deleted: pruned }, 'pruned login back-off rows')
  // Every batch of a full run is full: at the cap, some may be left.
  const behind = result.behind || pruned >= batchSize * maxBatches
  if (behind && !signal.aborted) logger.info({ ...deleted, loginThrottle: pruned }, 'cleanup is behind; continuing')
  return behind
}

/** Reloads `keyring` from the database, coalescing concurrent calls; a key sealed under another KEK is logged, not fatal. */
export function keyringReloader (deps: { db: Db } & Pick<JobDeps, 'kek' | 'keyring' | 'logger'>): () => Promise<void> {
  const { db, kek, keyring, logger } = deps
  return singleFlight(async () => {
    await loadKeyring(db, kek, keyring, {
      onRejectedKey: logRejectedKey(logger),
      onWrongKek: logWrongKek(logger)
    })
  })
}

export async function startBackgroundJobs (deps: JobDeps): Promise<BackgroundJobs> {
  const { config, kek, logger, metrics } = deps
  const keyConnection = connect(deps.databaseUrl, KEY_POOL, { statementTimeoutMs: deps.keyStatementTimeoutMs ?? KEY_STATEMENT_TIMEOUT_MS })
  const keysDb = keyConnection.db
  metrics.countPool('key', keyConnection.pool)
  const cleanupConnection = connect(deps.databaseUrl, CLEANUP_POOL, { statementTimeoutMs: deps.cleanupStatementTimeoutMs ?? CLEANUP_STATEMENT_TIMEOUT_MS })
  metrics.countPool('cleanup', cleanupConnection.pool)
  const reloadOwn = keyringReloader({ ...deps, db: keysDb })
  let stopped = false
  let failedReloads = 0
  let retry: NodeJS.Timeout | undefined
  const reloadKeys = async (why = 'key transition'): Promise<void> => {
    // Told after the primary's own reload, whatever its end: a worker forked meanwhile, too young to hear it, asks for the primary's keyring after, and gets the new one.
    try {
      await reloadOwn()
      failedReloads = 0
      clearTimeout(retry)
      retry = undefined
    } catch (err) {
      // Tried again soon, not at the backstop: a worker forked meanwhile starts
      // from the primary's keyring (keys/share.ts), and from one a revoke has
      // left behind it would publish and sign with the revoked key. Each try
      // tells the workers too, so one whose own reload failed catches up with it.
      // One retry at a time: callers that shared the failed run (reloadOwn
      // coalesces them; in a failover, every worker asking about a new kid)
      // each land here, and each doubling the wait would put the first retry
      // 2^callers seconds off instead of 1 s.
      if (!stopped && retry === undefined) {
        retry = setTimeout(() => {
          retry = undefined
          reload('retrying a failed reload')
        }, Math.min(RELOAD_RETRY_MAX_MS, config.keyCheckInterval * 1000, RELOAD_RETRY_FIRST_MS * 2 ** failedReloads++))
        retry.unref()
      }
      throw err
    } finally {
      deps.onReload?.(why)
    }
  }
  const reload = (why: string): void => {
    reloadKeys(why).catch((err: unknown) => {
      metrics.jobFailed('keyring_reload')
      logger.warn({ ...loggedError(err), why }, 'keyring reload failed')
    })
  }

  const listener = await listenForChanges(deps.databaseUrl, logger, {
    channels: {
      [KEYS_CHANNEL]: (reason) => reload(`notified: ${reason}`),
      [CLIENTS_CHANNEL]: (clientId) => deps.clientChanges?.changed(clientId)
    },
    onListening: (again) => {
      // Key changes notified while the connection was away were lost.
      if (again) reload('listener reconnected')
      deps.clientChanges?.heard(true)
    },
    onLost: () => {
      deps.clientChanges?.heard(false)
      metrics.jobFailed('key_listener')
    }
  }).catch(async (err: unknown) => {
    await keyConnection.close()
    await cleanupConnection.close()
    throw err
  })
  const backstop = setInterval(() => reload('periodic'), config.keyCheckInterval * 1000)
  backstop.unref()
  // At start too: an instance restarted more often than the interval (deploys,
  // a crash loop, an interval of days) would otherwise never clean up, and a
  // retention lowered by a restart takes effect at once.
  const stopCleanup = new AbortController()
  let cleaner: NodeJS.Timeout | undefined
  let cleaning: Promise<void> = Promise.resolve()
  const scheduleCleanup = (ms: number): void => {
    if (stopped) return
    cleaner = setTimeout(() => {
      cleaning = cleanup(deps, cleanupConnection.db, stopCleanup.signal).catch((err: unknown) => {
        metrics.jobFailed('cleanup')
        logger.warn(loggedError(err), 'cleanup failed')
        return false
      }).then((behind) => {
        const interval = config.cleanupInterval * 1000
        scheduleCleanup(behind ? Math.min(CLEANUP_CATCH_UP_PAUSE_MS, interval) : interval)
      })
    }, ms)
    cleaner.unref()
  }
  scheduleCleanup(0)

  const making = { kek, bits: config.keyBits, clock: deps.clock }
  let tick: NodeJS.Timeout | undefined
  let running: Promise<void> = Promise.resolve()
  const advance = async (): Promise<void> => {
    try {
      const done = await advanceKeys(keysDb, making, config, deps.clock())
      for (const transition of done ?? []) logger.info({ kid: transition.kid, transition: transition.kind }, 'signing key transition')
      if (done !== undefined && done.length > 0) await reloadKeys()
    } catch (err) {
      metrics.jobFailed('key_rotation')
      // Every tick fails the same way until the restart, so this one says what ends it.
      if (err instanceof WrongKekError) logger.error({ kid: err.kid }, `key lifecycle step failed: ${WRONG_KEK_REMEDY}`)
      else logger.warn(loggedError(err), 'key lifecycle step failed')
    }
  }
  const schedule = (): void => {
    if (stopped) return
    tick = setTimeout(() => {
      running = advance().finally(schedule)
    }, keyTickSeconds(config) * 1000)
    tick.unref()
  }
  schedule()

  return {
    reloadKeys,
    stop: async () => {
      stopped = true
      clearTimeout(tick)
      clearTimeout(retry)
      clearInterval(backstop)
      clearTimeout(cleaner)
      // A run in progress ends after its batch in flight (within the cleanup statement bound, on a silent database); none follows.
      stopCleanup.abort()
      await running
      await cleaning
      await listener.close()
      await keyConnection.close()
      await cleanupConnection.close()
    }
  }
}

/**
 * An HTTP worker of an instance: its own pool, keyring and event loop, the
 * same app as ever. What must mean one thing per instance it asks of
 * another process: hashing of the hashing process, over a Unix socket
 * (cluster/hashing.ts); of the primary over IPC, the per-IP counters
 * (cluster/rate-limit.ts, reported in batches) and the scrape (cluster/instance-metrics.ts). It starts
 * from the primary's keyring (keys/share.ts) and reloads it from the database
 * whenever the primary's reloads (a NOTIFY, the periodic backstop, a
 * transition), and on its own when a token names a kid it does not hold
 * (Keyring.catchUp); when that finds a change it tells the primary, which
 * reloads the instance. It drains on the primary's word or on SIGTERM/SIGINT, and
 * exits at once when the primary is gone.
 * @module
 */
import type { FastifyListenOptions } from 'fastify'
import type { Logger } from 'pino'
import { buildApp } from '../app.js'
import { ClientCache, type ClientFeedState } from '../clients/cache.js'
import { RefreshDecisions } from '../grants/refresh-decisions.js'
import type { Config } from '../config.js'
import { connect } from '../db/connect.js'
import { CLOCK_SYNC_MS, DatabaseClock } from '../db/database-clock.js'
import { loggedError } from '../errors.js'
import { keyringReloader } from '../jobs.js'
import { Keyring } from '../keys/keyring.js'
import { adoptKeys } from '../keys/share.js'
import { createMetrics, type Metrics } from '../metrics/metrics.js'
import { InstanceHashing } from './hashing.js'
import type { Boot } from './primary.js'
import { instanceRateLimitStore, type AskPrimary } from './rate-limit.js'
import { answer, Asker, isAnswer, isAsk, isNotice, notice, type Notice, type Send } from '../util/rpc.js'

export interface HttpWorker {
  /** Stops accepting, lets in-flight requests finish, closes the pool. */
  close: () => Promise<void>
}

const send: Send = (message) => { process.send?.(message) }

/**
 * At most one reload per this long for tokens naming a kid the worker does
 * not hold: short enough that a token signed with a key whose NOTIFY was
 * missed is refused for at most this long after another one was, long
 * enough that a flood of forged kids costs one read of signing_keys a
 * second per worker.
 */
const CATCH_UP_COOLDOWN_MS = 1000

/**
 * How long after a key was published (its published_at) an instance whose
 * LISTEN connection is sound may still not hold it, so that another
 * instance's token under it sets off a catch-up: NOTIFY arrives at the
 * commit, then the primary reads signing_keys, relays to its workers and
 * each reads it too, which is milliseconds and may be a second or two on a
 * busy database. published_at is stamped a moment before the commit (on
 * Postgres's clock, as every process reads it: db/database-clock.ts), so a few
 * seconds also cover that moment. Unknown here longer after that, the
 * change was missed: the LISTEN connection was down (a reconnect backs off up
 * to 5 s), slow or silently dead.
 */
const NOTIFY_PATH_ALLOWANCE_MS = 5000

/** `droppedLogLines`: this process's log lines its stdout could not take (logging.ts). */
export async function startWorker (config: Config, logger: Logger, droppedLogLines: () => number, onDrain: (why: string) => void): Promise<HttpWorker> {
  // Listening before anything is asked: a message that arrives while no
  // listener is attached is dropped, and loading modules takes event-loop turns.
  const asker = new Asker()
  const ask: AskPrimary = async <T>(kind: string, body: unknown) => await asker.ask<T>(send, kind, body)
  // Before boot's answer there is nothing to connect: it names the socket, and the worker connects then.
  let hashingReady = (): void => {}
  const clientCache = new ClientCache()
  let reloadKeys: (() => Promise<void>) | undefined
  // A change heard before the keyring was adopted: boot's answer and a notice sent after it can be handled in either order.
  let reloadMissed = false
  let metrics: Metrics | undefined
  const handlers = { 'metrics-json': async () => await metrics?.registry.getMetricsAsJSON() ?? [] }
  process.on('message', (message: unknown) => {
    if (isAnswer(message)) asker.settle(message)
    else if (isAsk(message)) answer(send, message, handlers, () => false, (err, kind) => logger.error({ err, kind }, 'could not answer the primary'))
    else if (isNotice(message)) heard(message)
  })
  const reload = (why: string): void => {
    if (reloadKeys === undefined) reloadMissed = true
    else reloadKeys().catch((err: unknown) => logger.warn({ ...loggedError(err), why }, 'keyring reload failed'))
  }
  const heard = (message: Notice): void => {
    if (message.kind === 'keys-changed') reload(String(message.body))
    else if (message.kind === 'client-changed') clientCache.changed(message.body as string)
    else if (message.kind === 'client-feed') clientCache.feed(message.body as ClientFeedState)
    else if (message.kind === 'hashing-ready') hashingReady()
    else if (message.kind === 'drain') onDrain('the primary is draining')
  }
  // The primary closes the channel only by exiting after this worker has: so
  // a disconnect means it died (kill -9, a crash). Without it there is no
  // rate limit, hashing or drain to finish, and the instance must vanish at
  // once, as one process did, so a gateway's kept-alive connections close
  // now and it moves on to another instance. node:cluster's own handler
  // would exit too, but an orderly exit takes a loaded machine a few hundred
  // milliseconds, during which requests still arrive and then fail.
  process.prependOnceListener('disconnect', () => { process.kill(process.pid, 'SIGKILL') })

  const boot = await ask<Boot>('boot', null)
  const hashing = new InstanceHashing(boot.hashingSocket)
  hashingReady = () => { hashing.connect() }
  hashing.connect()
  clientCache.feed(boot.clientFeed)
  // A request's statements, bounded by TESSERA_DB_STATEMENT_TIMEOUT_MS; the primary's jobs have bounds of their own (jobs.ts), and the CLI (migrations, cleanup) none: they may run long.
  const connection = connect(boot.databaseUrl, boot.poolSize, { statementTimeoutMs: config.dbStatementTimeoutMs })
  let stopClockSync = (): void => {}
  try {
    // The primary's reading, not one of our own: a worker replaced while the database is out of reach still serves the JWKS.
    const clock = DatabaseClock.fromHostOffset(connection.db, boot.hostOffsetMs)
    stopClockSync = clock.keepSynced(CLOCK_SYNC_MS, (err) => { logger.debug(loggedError(err), 'could not read Postgres\'s clock; keeping the last reading') })
    const kek = Buffer.from(boot.kek, 'base64url')
    const keyring = new Keyring()
    adoptKeys(keyring, boot.keys)
    const reloadOwn = keyringReloader({ db: connection.db, kek, keyring, logger })
    reloadKeys = reloadOwn
    if (reloadMissed) reload('a change heard while starting')
    keyring.catchUpWith({
      cooldownMs: CATCH_UP_COOLDOWN_MS,
      reload: async (kid) => {
        const before = keyring.version
        try {
          await reloadOwn()
        } catch (err) {
          logger.warn(loggedError(err), 'keyring reload for a token\'s unknown kid failed')
          return
        }
        if (keyring.version === before) {
          logger.debug('a token named a kid unknown to the database too')
          return
        }
        // The keyring was behind the database, whether the NOTIFY was lost or is on its way: the primary reloads and tells every worker now, so they all verify and sign as the database says.
        send(notice('keys-missed', null))
        const published = keyring.get(kid)?.publishedAt
        if (published === undefined) {
          logger.info({ kid }, 'a token named a kid unknown to the database too; the reload found another key change')
          return
        }
        const publishedAgoMs = clock.now().getTime() - published.getTime()
        if (publishedAgoMs > NOTIFY_PATH_ALLOWANCE_MS) {
          logger.warn({ kid, published_ago_ms: publishedAgoMs }, 'a token named a key this worker had not heard of: reloaded the keyring; the instance\'s LISTEN connection missed a key change')
        } else {
          // Published moments ago (`keys rotate --now`): another instance heard of it first and signed with it, the usual race, not a missed change.
          logger.info({ kid, published_ago_ms: publishedAgoMs }, 'a token named a key published moments ago, before this instance heard of it: reloaded the keyring')
        }
      }
    })
    const refreshDecisions = new RefreshDecisions(connection.db)
    const own = createMetrics({ pool: connection.pool, refreshDecisions, droppedLogLines, render: async () => await ask<string>('metrics', null) })
    metrics = own
    const app = await buildApp(config, { db: connection.db, logger, keyring, hasher: hashing, metrics: own, clock: clock.now, rateLimitStore: instanceRateLimitStore(ask), clientCache, refreshDecisions })
    // Fastify's listen options lack reusePort in their type; it passes them to node:net, which has it.
    const listenOptions: FastifyListenOptions & { reusePort: boolean } = { port: boot.listen.port, host: config.host, reusePort: boot.listen.reusePort }
    const address = await app.listen(listenOptions)
    send(notice('listening', address))
    return {
      close: async () => {
        await app.close()
        hashing.close()
        // Every request is answered: the counts are final. Handed to the
        // primary, or what was counted since its last scrape would be lost with this process.
        const final = await own.registry.getMetricsAsJSON()
        await new Promise<void>((resolve) => {
          if (process.send === undefined || !process.connected) resolve()
          else process.send(notice('final-metrics', final), undefined, {}, () => resolve())
        })
        stopClockSync()
        await connection.close()
      }
    }
  } catch (err) {
    stopClockSync()
    await connection.close()
    throw err
  }
}

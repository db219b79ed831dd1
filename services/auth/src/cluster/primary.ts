/**
 * An instance's primary process: everything that must exist once per
 * instance. It starts the embedded Postgres (when there is no DATABASE_URL)
 * and stops it last, migrates, resolves the KEK, makes the first key, runs
 * the background jobs (key schedule, cleanup, the LISTEN for key and client
 * changes, relayed to every worker), starts the hashing process (which holds
 * the instance's hashing queue; the workers ask it directly), owns the
 * per-IP counters and the instance's metrics, and forks
 * `config.workers` HTTP workers (cluster/worker.ts), which share the port
 * (cluster/port.ts). Drain: every worker finishes its in-flight requests
 * and exits, then the rest closes in reverse order.
 * @module
 */
import cluster, { type Worker } from 'node:cluster'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { ClientFeedState } from '../clients/cache.js'
import { ensureDefaultClient } from '../clients/register.js'
import type { Config } from '../config.js'
import { connect, type Connection } from '../db/connect.js'
import { connectionRoom } from '../db/connection-room.js'
import { CLOCK_SYNC_MS, DatabaseClock, describeHostOffset, HOST_OFFSET_WARNING_MS } from '../db/database-clock.js'
import { databaseFor } from '../db/locate.js'
import { migrateUp, refuseSchemaElsewhere, schemaStanding } from '../db/migrate.js'
import { loggedError } from '../errors.js'
import { KEY_STATEMENT_TIMEOUT_MS, startBackgroundJobs } from '../jobs.js'
import { ensureSigningKey } from '../keys/ensure.js'
import { resolveKek } from '../keys/kek.js'
import { Keyring } from '../keys/keyring.js'
import { finishedRewrap, finishInterruptedRewrap } from '../keys/local-kek.js'
import { loadKeyring, logRejectedKey } from '../keys/load.js'
import { shareKeys, type SharedKey } from '../keys/share.js'
import { createMetrics } from '../metrics/metrics.js'
import { HashingProcess } from '../passwords/hashing-engine.js'
import { listenForMetrics } from '../routes/metrics.js'
import { InstanceMetrics, WORKER_METRICS_TIMEOUT_MS, type MetricsJson } from './instance-metrics.js'
import { connectionsWarning, instanceConnections, PRIMARY_POOL, workerPoolSize } from './pool.js'
import { claimPort, hostRefused, sharedPortFor, type SharedPort } from './port.js'
import { rateLimitCounter } from './rate-limit.js'
import { StartupError } from './startup.js'
import { answer, Asker, isAnswer, isAsk, isNotice, notice, type Notice, type Send } from '../util/rpc.js'
import { memoryWarning } from '../util/memory-limit.js'

/** What a worker needs from the primary before it can serve: `keys` is the primary's keyring (keys/share.ts). */
/** What a worker is handed to start: `hostOffsetMs`, the primary's last reading of Postgres's clock against this host's (db/database-clock.ts). */
export interface Boot { databaseUrl: string, kek: string, keys: SharedKey[], poolSize: number, hashingSocket: string, clientFeed: ClientFeedState, listen: SharedPort, hostOffsetMs: number }

/** Node's flags for each HTTP worker: this process's, and the module that lets a worker whose primary is gone exit quietly. */
const WORKER_EXEC_ARGV = [...process.execArgv, '--require', fileURLToPath(new URL('./worker-preload.js', import.meta.url))]

/**
 * How often at most the workers hear of a new share of the hashing queue.
 * A share a second old is off by a hash or two, which the queue itself
 * refuses; announcing each change woke every worker about once per login.
 */
const SHARE_ANNOUNCE_INTERVAL_MS = 1000

/** The hashing process's counts in the instance's scrape, beside the workers' (whose cluster ids count from 1): one per incarnation. */
const hashingMetricsId = (incarnation: number): number => -incarnation

/** A worker that keeps exiting before it listens (its start fails) is forked again after this back-off, doubling up to the last. */
const RESPAWN_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 16_000, 30_000]

export interface Primary {
  /** Every worker is listening: the address they share. */
  address: string
  embedded: boolean
  /** Whether this start started the embedded Postgres; one already running (`tessera db start`) is left running. */
  startedEmbedded: boolean
  /** The /metrics listener's URL when TESSERA_METRICS_PORT is set. */
  metricsUrl: string | undefined
  /**
   * Drains and closes; `embeddedStopped`: whether it stopped the embedded
   * Postgres, which it does only to the postmaster this start started.
   */
  close: () => Promise<{ embeddedStopped: boolean }>
}

/**
 * The schema this build serves from: Tessera's tables in another schema are
 * refused before anything reads public's absence as "behind" (SchemaElsewhereError),
 * and so are they when this role may not use public (SchemaOutOfReachError).
 */
async function requireSchema (connection: Connection, checks: Connection, migrate: boolean, logger: Logger): Promise<void> {
  // migrateUp refuses Tessera's tables in another schema itself.
  if (migrate) await migrateUp(connection.db)
  else await refuseSchemaElsewhere(checks.db)
  const { pending, unknownHere: ahead } = await schemaStanding(checks.db)
  if (pending.length > 0) throw new StartupError(`the database schema is behind (${pending.join(', ')} pending): run \`tessera migrate up\``)
  // Served, not refused: a rolling upgrade runs the old build on the new schema for a while.
  if (ahead.length > 0) {
    logger.warn({ migrations: ahead }, `the database schema is ahead of this build (${ahead.join(', ')} applied by a newer one): fine during a rolling upgrade across additive migrations, not for long (docs/operators.md, "Upgrading")`)
  }
}

/**
 * The KEK as resolved, or, for the local file, the one an interrupted `keys
 * rewrap` sealed the keys under: its rename over the file is finished here,
 * and said at warn, the one trace of a step this start took on the data directory.
 */
async function localKekAfterRewrap (checks: Connection, config: Config, kek: Buffer, logger: Logger): Promise<Buffer> {
  if (config.kek !== undefined) return kek
  const local = await finishInterruptedRewrap(checks.db, config.dataDir, kek)
  if (local.finished !== undefined) {
    logger.warn({ ...local.finished }, finishedRewrap(local.finished))
  }
  return local.kek
}

/**
 * A worker that exited meanwhile (a drain, a crash) took its requests with
 * it: an answer still on its way to it, such as a hash the hashing process
 * finished after, is dropped rather than raised as the channel's error.
 */
function sendTo (worker: Worker): Send {
  return (message) => {
    // With a callback a closed channel is reported to it, not thrown as the worker's 'error'.
    if (worker.isConnected()) worker.send(message, () => {})
  }
}

/**
 * `droppedLogLines`: this process's log lines its stdout could not take
 * (logging.ts). `abandoned`: aborted by an error nothing caught while this
 * start runs (server.ts): the start goes no further than the step it is in
 * and fails, once it has stopped what it started, as a start that fails by
 * itself does.
 */
export async function startPrimary (config: Config, logger: Logger, droppedLogLines: () => number, abandoned: AbortSignal): Promise<Primary> {
  // Before any database work: an instance refused here (another has the port) has changed nothing.
  const releasePort = await claimPort(config.host, config.port)
  let embeddedStopped = false
  const stops: Array<() => Promise<void>> = [releasePort]
  // Each is tried, in reverse order of its start: one that fails does not leave the embedded Postgres behind it running.
  const closeAll = async (): Promise<void> => {
    const failures: unknown[] = []
    for (const stop of stops.splice(0)) await stop().catch((err: unknown) => { failures.push(err) })
    if (failures.length > 0) throw failures[0]
  }
  const stillStarting = (): void => { abandoned.throwIfAborted() }
  // Declared before the try, for its catch to end the workers of a start that fails while they start.
  const workers = new Map<Worker, Asker>()
  let draining = false
  let starting: { listening: (address: string) => void, failed: (why: string) => void } | undefined
  abandoned.addEventListener('abort', () => starting?.failed('the start was abandoned'), { once: true })
  try {
    // In the try: an embedded Postgres still starting when the start is
    // abandoned is waited for, then stopped, not left running by an exit
    // while pg_ctl (in a session of its own) goes on starting it.
    const { url, embedded } = await databaseFor({ ...config, connections: instanceConnections(config.workers) })
    stops.unshift(async () => { embeddedStopped = await embedded?.stop() ?? false })
    for (const cluster of embedded?.removedClusters ?? []) logger.info({ cluster }, 'removed the embedded Postgres cluster of a data directory that no longer exists')
    stillStarting()
    const connection = connect(url, PRIMARY_POOL)
    stops.unshift(async () => { await connection.close() })
    // The start's own reads and small writes, bounded as the key work's are: a
    // database that lets the start in and then goes silent (a failover, a
    // partition, a frozen host) fails the start with "cannot reach the
    // database" for the orchestrator to restart it, where it held the start for
    // TCP's ~15 minutes with nothing logged. Not the migrations of an embedded
    // Postgres, which may be long and come from a child of this process.
    const checks = connect(url, 1, { statementTimeoutMs: KEY_STATEMENT_TIMEOUT_MS })
    stops.unshift(async () => { await checks.close() })
    await requireSchema(connection, checks, embedded !== undefined, logger)
    stillStarting()
    const kek = await localKekAfterRewrap(checks, config, await resolveKek(config), logger)
    // Read through `checks`, bounded as the start's reads are; synced after on the instance's own pool, which outlives it.
    const databaseClock = await DatabaseClock.read(connection.db, {}, checks.db)
    const stopClockSync = databaseClock.keepSynced(CLOCK_SYNC_MS, (err) => { logger.debug(loggedError(err), 'could not read Postgres\'s clock; keeping the last reading') })
    stops.unshift(async () => { stopClockSync() })
    if (Math.abs(databaseClock.hostOffsetMs) > HOST_OFFSET_WARNING_MS) {
      logger.warn({ host_offset_ms: Math.round(databaseClock.hostOffsetMs) }, `this host's clock is ${describeHostOffset(databaseClock.hostOffsetMs)} Postgres's: Tessera tells the time by Postgres's, but resource servers check tokens' exp and iat by their own; keep every host on NTP (docs/operators.md, "Clocks")`)
    }
    const clock = databaseClock.now
    const keyring = new Keyring()
    const created = await ensureSigningKey(checks.db, kek, config.keyBits, clock())
    if (created !== undefined) logger.info({ kid: created }, 'created the first signing key')
    await loadKeyring(checks.db, kek, keyring, { onRejectedKey: logRejectedKey(logger) })
    if (await ensureDefaultClient(checks.db, config, clock())) logger.info({ client_id: config.defaultClientId }, 'registered the default public client')
    const room = await connectionRoom(checks.db)
    await checks.close()
    stillStarting()
    if (config.unrecognizedNodeEnv !== undefined) {
      logger.warn(`NODE_ENV=${JSON.stringify(config.unrecognizedNodeEnv)} is not production: a generated KEK is allowed and logs are pretty at a terminal; set NODE_ENV=production in production`)
    }
    if (config.defaultIssuerElsewhere !== undefined) {
      logger.warn(`TESSERA_ISSUER is unset: tokens, the metadata and its JWKS URL name ${config.issuer}, not this instance on port ${config.defaultIssuerElsewhere}; set TESSERA_ISSUER to the URL clients reach it by`)
    }
    if (config.plainHttpIssuer === true) {
      logger.warn(`TESSERA_ISSUER=${config.issuer} is plain http in production: clients would send passwords and tokens to it in clear, and RFC 8414 wants an https issuer; set it to the https URL of the gateway in front`)
    }
    const shortOfConnections = connectionsWarning(config.workers, room, embedded !== undefined)
    if (shortOfConnections !== undefined) logger.warn({ connections: instanceConnections(config.workers), connection_limit: room.limit }, shortOfConnections)
    const tightMemory = memoryWarning(config.memoryLimit, config.workers, config.hashConcurrency)
    if (tightMemory !== undefined) logger.warn({ memory_limit_bytes: config.memoryLimit?.bytes }, tightMemory)
    if (config.unverifiedDatabaseTls === true) {
      logger.warn('DATABASE_URL has sslmode=require and no sslrootcert: the connection to Postgres is encrypted, but its certificate is not checked, so whoever sits between this host and Postgres can pose as it; give sslrootcert the CA that signed it, and use sslmode=verify-full (docs/operators.md, "Postgres over TLS")')
    }
    if (config.simplejwtCompat && config.signup === 'open') {
      // A DRF service finds a token's user by name: a name signed up here before its Django user was imported is that Django user to it.
      logger.warn('sign-up is open while SimpleJWT compatibility is on: anyone can claim a Django username that is not imported yet; set TESSERA_SIGNUP=closed until the import is done (docs/migrating-from-simplejwt.md)')
    }

    // Each worker has its own Asker: when a worker's channel closes, what was
    // asked of it fails at once (failAll) rather than at its timeout.
    const broadcast = (message: Notice): void => {
      for (const worker of workers.keys()) if (worker.isConnected()) worker.send(message)
    }

    // Started beside the workers rather than before them: both take a while to load.
    // Its queue's counts live in it, so what one incarnation counted stays in the instance's scrape after it exits, as an exited worker's does.
    const engine: HashingProcess = new HashingProcess({
      // One job per hashing thread: a job handed over starts at once, so its
      // wait in the queue is all its wait (two per thread saved no
      // measurable time and hid a hash's worth of waiting in the pool).
      concurrency: config.hashConcurrency,
      depth: config.hashQueueDepth,
      ...(config.hashMaxWaitMs === 0 ? {} : { maxWaitMs: config.hashMaxWaitMs }),
      nice: config.hashNice,
      workers: config.workers,
      shareAnnounceIntervalMs: SHARE_ANNOUNCE_INTERVAL_MS
    }, logger, config.hashingProcessEnv, {
      // The workers connect now (each connection hears the queue's state and its share) rather than at their first login.
      onReady: () => { broadcast(notice('hashing-ready')) },
      onExit: (incarnation) => { instanceMetrics.workerExited(hashingMetricsId(incarnation)) }
    })
    stops.unshift(async () => { await engine.stop() })
    const metrics = createMetrics({ keyring, pool: connection.pool, keyRotation: config.keyRotation, keyPublishLead: config.keyPublishLead, clock, droppedLogLines })
    // Whether client changes are heard now; the epoch lets a worker tell the latest telling from an older one (boot's answer and a notice can cross).
    let clientFeed: ClientFeedState = { live: false, epoch: 0 }
    const boot = (): Boot => ({ databaseUrl: url, kek: kek.toString('base64url'), keys: shareKeys(keyring), poolSize: workerPoolSize(config.workers), hashingSocket: engine.socketPath, clientFeed, listen, hostOffsetMs: databaseClock.hostOffsetMs })
    const instanceMetrics = new InstanceMetrics(metrics.registry)
    const renderInstanceMetrics = async (): Promise<string> => await instanceMetrics.render([
      ...[...workers].filter(([w]) => w.isConnected())
        .map(([w, asker]) => ({ id: w.id, metrics: async () => await asker.ask<MetricsJson>(sendTo(w), 'metrics-json', null, WORKER_METRICS_TIMEOUT_MS) })),
      { id: hashingMetricsId(engine.incarnation), metrics: async () => await engine.metrics(WORKER_METRICS_TIMEOUT_MS) }
    ])
    const handlers = {
      boot,
      rate: rateLimitCounter(),
      metrics: renderInstanceMetrics
    }
    // TESSERA_METRICS_PORT: the primary serves the whole instance's scrape itself, apart from client traffic.
    const metricsListener = config.metricsPort === undefined
      ? undefined
      : await listenForMetrics(metrics.registry, renderInstanceMetrics, config.host, config.metricsPort).catch((err: unknown) => { throw hostRefused(err, config.host) })
    if (metricsListener !== undefined) stops.unshift(async () => { await metricsListener.close() })
    // After the metrics listener: PORT equal to TESSERA_METRICS_PORT fails here, named as both.
    const listen = await sharedPortFor(config.host, config.port)
    stillStarting()

    const jobs = await startBackgroundJobs({
      config,
      databaseUrl: url,
      keyring,
      kek,
      logger,
      clock,
      metrics,
      onReload: (why) => broadcast(notice('keys-changed', why)),
      clientChanges: {
        changed: (clientId) => broadcast(notice('client-changed', clientId)),
        heard: (live) => {
          clientFeed = { live, epoch: clientFeed.epoch + 1 }
          broadcast(notice('client-feed', clientFeed))
        }
      }
    })
    stops.unshift(async () => { await jobs.stop() })
    stillStarting()

    // Workers in a row that exited before they listened: a start that keeps failing is retried ever more slowly, not twice a second.
    let failedStarts = 0
    const respawns = new Set<NodeJS.Timeout>()
    cluster.setupPrimary({ execArgv: WORKER_EXEC_ARGV })
    const fork = (): Worker => {
      const worker = cluster.fork()
      const asker = new Asker()
      workers.set(worker, asker)
      let listened = false
      worker.on('message', (message: unknown) => {
        if (isAsk(message)) answer(sendTo(worker), message, handlers, () => false, (err, kind) => logger.error({ err, kind }, 'a worker\'s request failed in the primary'))
        else if (isAnswer(message)) asker.settle(message)
        else if (isNotice(message) && message.kind === 'final-metrics') instanceMetrics.workerFinished(worker.id, message.body as MetricsJson)
        else if (isNotice(message) && message.kind === 'listening') {
          listened = true
          failedStarts = 0
          starting?.listening(message.body as string)
        } else if (isNotice(message) && message.kind === 'keys-missed') {
          // A worker met a key the instance had not heard of (cluster/worker.ts): the NOTIFY was lost or is not here yet, so the instance reloads now rather than at the backstop or its arrival.
          jobs.reloadKeys('a worker met a kid the instance missed').catch((err: unknown) => logger.warn(loggedError(err), 'keyring reload failed'))
        }
      })
      // On the channel's close, not the exit: a drained worker's final counts,
      // sent just before it exits, can be read after its exit is seen, never after the close.
      worker.once('disconnect', () => {
        asker.failAll('the worker exited')
        instanceMetrics.workerExited(worker.id)
      })
      worker.once('exit', (code, signal) => {
        workers.delete(worker)
        if (draining) return
        if (starting !== undefined) {
          starting.failed(`an HTTP worker exited with ${signal ?? String(code)} while starting`)
          return
        }
        const details = { worker_pid: worker.process.pid, code, signal }
        if (listened) {
          // Exit code 0 is a worker that drained (SIGTERM to its pid alone: recycling it on purpose), not a crash.
          logger[code === 0 ? 'info' : 'error'](details, 'an HTTP worker exited; starting another')
          fork()
          return
        }
        const delay = RESPAWN_DELAYS_MS[Math.min(failedStarts++, RESPAWN_DELAYS_MS.length - 1)] ?? 0
        logger.error({ ...details, retry_in_ms: delay }, 'an HTTP worker exited before it listened; starting another after a pause')
        const respawn = setTimeout(() => {
          respawns.delete(respawn)
          if (!draining) fork()
        }, delay)
        respawns.add(respawn)
      })
      return worker
    }

    const address = await new Promise<string>((resolve, reject) => {
      let listening = 0
      starting = {
        listening: (at) => {
          if (++listening < config.workers) return
          engine.ready.then(() => { starting = undefined; resolve(at) }, () => {})
        },
        failed: (why) => { starting = undefined; reject(new StartupError(why)) }
      }
      for (let i = 0; i < config.workers; i++) fork()
      engine.ready.catch((err: unknown) => starting?.failed(`the hashing process did not start: ${(err as Error).message}`))
    })
    stillStarting()

    return {
      address,
      embedded: embedded !== undefined,
      startedEmbedded: embedded?.started === true,
      metricsUrl: metricsListener?.url,
      close: async () => {
        draining = true
        for (const respawn of respawns) clearTimeout(respawn)
        const exited = [...workers.keys()].map(async (worker) => await new Promise((resolve) => {
          if (worker.isDead()) resolve(undefined)
          else worker.once('exit', resolve)
        }))
        broadcast(notice('drain'))
        await Promise.all(exited)
        await closeAll()
        return { embeddedStopped }
      }
    }
  } catch (err) {
    draining = true
    for (const worker of workers.keys()) worker.kill()
    // The start's own failure is the one said; a stop that failed too is a
    // line of its own. An abandoned start (a signal, an error nothing caught)
    // has logged why, and ends as a drain does, on `stopped`: a log ending
    // there reads as a stop that did not finish. A start that failed by
    // itself says so in its one line on stderr, with nothing on stdout.
    await closeAll().then(
      () => { if (abandoned.aborted) logger.info({ embedded_postgres_stopped: embeddedStopped }, 'stopped') },
      (stopErr: unknown) => { logger.error(loggedError(stopErr), 'the failed start could not stop all it had started') })
    throw err
  }
}

/**
 * The process entry. The first process is the instance's primary
 * (cluster/primary.ts): config → database → keys → hashing process → HTTP
 * workers, which run this same file and become cluster/worker.ts. SIGTERM and
 * SIGINT drain: the workers stop accepting and finish their in-flight
 * requests, then the primary closes its jobs, its pool and the embedded
 * Postgres, and exits 0.
 * @module
 */
import cluster from 'node:cluster'
import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig, type Config } from './config.js'
import { StartupError } from './cluster/startup.js'
import type { Primary } from './cluster/primary.js'
import type { HttpWorker } from './cluster/worker.js'
import { WrongKekError } from './keys/kek.js'
import { createProcessLogger, logProcessWarnings, type ProcessLogger } from './logging.js'
import { databaseUnreachable, loggedError } from './errors.js'

/** A worker still draining after this long is cut off (the primary's own limit is longer). */
const WORKER_DRAIN_LIMIT_MS = 25_000
const PRIMARY_DRAIN_LIMIT_MS = 30_000
/**
 * A start abandoned after an error nothing caught exits once it has stopped
 * what it started, or after this long, whatever is still running (the
 * embedded Postgres's own stop may wait a minute).
 */
const ABANDONED_START_LIMIT_MS = 30_000

function fail (message: string): never {
  process.stderr.write(`tessera: ${message}\n`)
  process.exit(1)
}

// Each kind of process loads only its own modules: the primary not Fastify, a worker not the embedded Postgres.
async function runPrimary (config: Config, { logger, droppedLines }: ProcessLogger): Promise<void> {
  // While the instance starts, an error nothing caught (a throw in a
  // callback, or a rejection no one awaits, which Node raises as one when no
  // 'unhandledRejection' listener is there) is one log line, redacted, and
  // exit 1, not Node's stack on stderr; SIGTERM or SIGINT (Ctrl-C at
  // `make run` while the embedded Postgres starts) is a stop, exit 0. Either
  // way the start is abandoned: the process exits once it has stopped what
  // it started (its workers, the embedded Postgres it started, which the next
  // start would adopt and then leave running at its own stop), or after
  // ABANDONED_START_LIMIT_MS, or at a second signal. Once it serves,
  // closeWithGrace logs either and drains.
  const abandon = new AbortController()
  // Empty until startPrimary is called: an error before that just exits.
  const start: { started?: Promise<Primary> } = {}
  const abandonStart = (code: number): void => {
    abandon.abort()
    const exit = (): never => process.exit(code)
    const { started } = start
    if (started === undefined) process.exit(code)
    setTimeout(() => {
      logger.error({ limit_ms: ABANDONED_START_LIMIT_MS }, 'what the start had started did not stop in time; exiting (an embedded Postgres it started may be left running: tessera db stop)')
      process.exit(1)
    }, ABANDONED_START_LIMIT_MS)
    // Started all the same (the error came after its last step): stopped as a drain would stop it.
    started.then(async (primary) => { await primary.close() }).then(exit, exit)
  }
  const failedWhileStarting = (err: Error): void => {
    // Another while the start stops: the first said why.
    if (abandon.signal.aborted) return
    logger.error({ err }, 'shutting down after an error')
    abandonStart(1)
  }
  const stoppedWhileStarting = (signal: NodeJS.Signals): void => {
    if (abandon.signal.aborted) {
      logger.warn({ signal }, 'stopping at once, before what the start had started has stopped (an embedded Postgres it started may be left running: tessera db stop)')
      process.exit(1)
    }
    logger.info({ signal }, 'stopping before the start finished')
    abandonStart(0)
  }
  process.on('uncaughtException', failedWhileStarting)
  process.on('SIGTERM', stoppedWhileStarting)
  process.on('SIGINT', stoppedWhileStarting)
  const { startPrimary } = await import('./cluster/primary.js')
  start.started = startPrimary(config, logger, droppedLines, abandon.signal)
  const primary = await start.started.catch(async (err: unknown) => {
    // Abandoned, its failure is not the instance's to say: abandonStart's caller said why, and it exits.
    if (abandon.signal.aborted) await new Promise<never>(() => {})
    throw err
  })
  process.off('uncaughtException', failedWhileStarting)
  process.off('SIGTERM', stoppedWhileStarting)
  process.off('SIGINT', stoppedWhileStarting)
  closeWithGrace({ delay: PRIMARY_DRAIN_LIMIT_MS, logger }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err }, 'shutting down after an error')
    else logger.info({ signal }, 'draining')
    const { embeddedStopped } = await primary.close()
    // Why a Postgres this instance started is left running goes on the same
    // line: a line of its own just before it was at times written after it
    // (pino's stream writes at exit what waits, then what was in flight).
    const leftRunning = primary.startedEmbedded && !embeddedStopped
      ? { embedded_postgres_left_running: 'the embedded Postgres this instance started was stopped while it ran (tessera db stop); the one running now was started by another process' }
      : {}
    // The last line of an orderly stop, so a log ending at "draining" reads as a stop that did not finish.
    logger.info({ ...leftRunning, embedded_postgres_stopped: embeddedStopped }, 'stopped')
  })
  logger.info({ address: primary.address, workers: config.workers, hash_concurrency: config.hashConcurrency, cores: config.cores, cores_from: config.coresFrom, issuer: config.issuer, embedded_postgres: primary.embedded, metrics: primary.metricsUrl }, 'tessera is serving')
}

async function runWorker (config: Config, { logger, droppedLines }: ProcessLogger): Promise<void> {
  // Empty until the worker serves: a drain before that just exits.
  const started: { worker?: HttpWorker } = {}
  let draining = false
  const drain = (why: string, code = 0): void => {
    if (draining) return
    draining = true
    logger.info({ why }, 'draining')
    setTimeout(() => process.exit(1), WORKER_DRAIN_LIMIT_MS).unref()
    Promise.resolve(started.worker?.close()).then(() => process.exit(code), (err: unknown) => {
      logger.error({ err }, 'the worker did not close cleanly')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => drain('SIGTERM'))
  process.on('SIGINT', () => drain('SIGINT'))
  process.on('uncaughtException', (err) => {
    logger.error({ err }, 'shutting down after an error')
    drain('an uncaught error', 1)
  })
  const { startWorker } = await import('./cluster/worker.js')
  started.worker = await startWorker(config, logger, droppedLines, drain)
}

/** The settings this process loaded, for naming the one an address in use came from. */
let loaded: Config | undefined
/** This process's logger, once it has one. */
let processLog: ProcessLogger | undefined

/** Which setting named the port a listen found taken: PORT, or TESSERA_METRICS_PORT when it is that one (or both, when they are equal). */
function addressInUse (err: Error & { port?: unknown }): string {
  const port = typeof err.port === 'number' ? err.port : undefined
  const settings = port === undefined
    ? []
    : [...(loaded?.port === port ? ['PORT'] : []), ...(loaded?.metricsPort === port ? ['TESSERA_METRICS_PORT'] : [])]
  const named = settings.length === 0 ? '' : `${settings.map((name) => `${name}=${String(port)}`).join(' and ')}: `
  const why = settings.length === 2 ? 'give TESSERA_METRICS_PORT a port of its own' : 'another process listens there'
  return `${named}the address is already in use (${why}): ${err.message}`
}

async function main (): Promise<void> {
  let config
  try {
    config = loadConfig(process.env)
    loaded = config
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message)
    throw err
  }
  // Pretty logs only for a person at a terminal outside production (pino-pretty
  // is a development dependency, absent from the image); anything else gets JSON lines.
  const log = createProcessLogger(config, process.stdout.isTTY && !config.production)
  processLog = log
  logProcessWarnings(log.logger)
  if (cluster.isPrimary) await runPrimary(config, log)
  else await runWorker(config, log)
}

main().catch((err: unknown) => {
  // A worker that fails to start says why in a log line like its others:
  // the primary starts another, which may fail the same way again and
  // again, and says the instance's own failure at start itself.
  if (cluster.isWorker && processLog !== undefined) {
    processLog.logger.error(loggedError(err), 'the HTTP worker could not start')
    process.exit(1)
  }
  if (err instanceof StartupError || err instanceof WrongKekError || err instanceof ConfigError) fail(err.message)
  const code = (err as { code?: string }).code
  if (code === 'EADDRINUSE') fail(addressInUse(err as Error))
  const unreachable = databaseUnreachable(err)
  if (unreachable !== undefined) fail(unreachable)
  fail(`failed to start: ${err instanceof Error ? err.message : String(err)}`)
})

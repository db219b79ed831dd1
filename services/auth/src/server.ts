/**
 * The process entry: config → database → keyring → app → listen. SIGTERM and
 * SIGINT drain: the listener stops accepting, in-flight requests finish, then
 * the pool and the embedded Postgres close, and the process exits 0.
 * @module
 */
import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig } from './config.js'
import { WrongKekError } from './keys/kek.js'
import { createLogger } from './logging.js'
import { startRuntime, StartupError } from './runtime.js'

function fail (message: string): never {
  process.stderr.write(`tessera: ${message}\n`)
  process.exit(1)
}

async function main (): Promise<void> {
  let config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message)
    throw err
  }
  // Pretty logs only for a person at a terminal outside production (pino-pretty
  // is a development dependency, absent from the image); anything else gets JSON lines.
  const logger = createLogger(config, undefined, process.stdout.isTTY && !config.production)
  const runtime = await startRuntime(config, logger)
  closeWithGrace({ delay: 25_000, logger }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err }, 'shutting down after an error')
    else logger.info({ signal }, 'draining')
    await runtime.close()
  })
  const address = await runtime.app.listen({ port: config.port, host: config.host })
  logger.info({ address, issuer: config.issuer, embedded_postgres: runtime.embedded !== undefined, metrics: runtime.metrics?.url }, 'tessera is serving')
}

main().catch((err: unknown) => {
  if (err instanceof StartupError || err instanceof WrongKekError || err instanceof ConfigError) fail(err.message)
  const code = (err as { code?: string }).code
  if (code === 'EADDRINUSE') fail(`the address is already in use: ${(err as Error).message}`)
  if (code === 'ECONNREFUSED' || code === '28P01' || code === '3D000') fail(`cannot reach the database: ${(err as Error).message}`)
  fail(`failed to start: ${err instanceof Error ? err.message : String(err)}`)
})

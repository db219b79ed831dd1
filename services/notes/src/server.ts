/**
 * Process entry: config → database (migrated) → app → listen; drains on SIGTERM.
 * @module
 */
import closeWithGrace from 'close-with-grace'
import { buildApp, type App } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { connect, databaseStartFailure, migrate } from './db.js'
import { createKeySource } from './keys.js'
import { createProcessLogger, logProcessWarnings } from './logging.js'

/**
 * Listening fails for an address this machine does not have or a port taken:
 * Node's error names neither setting ("getaddrinfo ENOTFOUND …"), so the
 * one line says which to change, as Tessera's does.
 */
async function listen (app: App, config: Config): Promise<string> {
  try {
    return await app.listen({ port: config.port, host: config.host })
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException
    const host = `HOST=${JSON.stringify(config.host)}`
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new ConfigError(`${host} does not resolve to an address (${message})`)
    if (code === 'EADDRNOTAVAIL') throw new ConfigError(`${host} is not an address of this machine (${message})`)
    if (code === 'EADDRINUSE') throw new ConfigError(`PORT=${config.port}: the address is already in use (another process listens there): ${message}`)
    if (code === 'EACCES') throw new ConfigError(`PORT=${config.port}: this process may not listen there (a port below 1024 needs privileges): ${message}`)
    throw err
  }
}

async function main (): Promise<void> {
  const config = loadConfig(process.env)
  const logger = createProcessLogger(config, { base: { service: 'tessera-notes' }, redact: ['req.headers.authorization'] })
  logProcessWarnings(logger)
  const db = connect(config.databaseUrl)
  await migrate(db)
  const app = await buildApp(config, { db, logger, keys: createKeySource(config.jwksUrl, { cacheMaxAgeMs: config.jwksTtlMs, cooldownMs: config.jwksCooldownMs, clockSkewMs: config.clockSkewMs }) })
  closeWithGrace({ delay: 25_000, logger }, async () => {
    await app.close()
    await db.destroy()
  })
  const address = await listen(app, config)
  logger.info({ address, issuer: config.issuer, jwks: config.jwksUrl }, 'notes is serving')
}

main().catch((err: unknown) => {
  // One line, as Tessera's: the setting or the database named, then what Node or Postgres said; never a stack.
  const why = err instanceof ConfigError ? err.message : databaseStartFailure(err) ?? `failed to start: ${err instanceof Error ? err.message : String(err)}`
  process.stderr.write(`notes: ${why.replace(/\s*\n\s*/g, ' ')}\n`)
  process.exit(1)
})

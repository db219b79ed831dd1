/**
 * Process entry: config → database (migrated) → app → listen; drains on SIGTERM.
 * @module
 */
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { connect, migrate } from './db.js'
import { createKeySource } from './keys.js'

async function main (): Promise<void> {
  const config = loadConfig(process.env)
  const logger = pino({ level: config.logLevel, base: { service: 'tessera-notes' }, redact: ['req.headers.authorization'] })
  const db = connect(config.databaseUrl)
  await migrate(db)
  const app = await buildApp(config, { db, logger, keys: createKeySource(config.jwksUrl, { cacheMaxAgeMs: config.jwksTtlMs, cooldownMs: config.jwksCooldownMs }) })
  closeWithGrace({ delay: 25_000, logger }, async () => {
    await app.close()
    await db.destroy()
  })
  const address = await app.listen({ port: config.port, host: config.host })
  logger.info({ address, issuer: config.issuer, jwks: config.jwksUrl }, 'notes is serving')
}

main().catch((err: unknown) => {
  process.stderr.write(`notes: ${err instanceof ConfigError ? err.message : `failed to start: ${String(err)}`}\n`)
  process.exit(1)
})

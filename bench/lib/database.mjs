// @ts-check
/**
 * A fresh, migrated Postgres database for one benchmark run: the embedded
 * server under .data/bench (wiped and initialised anew), or a scratch
 * database created on the server that DATABASE_URL names and dropped after.
 * @module
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { connect, migrateUp, postgresClientConfig, startEmbeddedPostgres, stopEmbeddedPostgres } from './service.mjs'

/**
 * @typedef {object} BenchDatabase
 * @property {string} url connection string of the migrated database
 * @property {string} source 'embedded' or 'DATABASE_URL'
 * @property {string} version `SHOW server_version`
 * @property {Record<string, string>} settings the server settings that shape write cost
 * @property {() => Promise<void>} close drops the scratch database or stops the embedded server
 */

/** @param {string} dataDir */
async function wipeEmbedded (dataDir) {
  await stopEmbeddedPostgres(dataDir).catch(() => false)
  // As root the cluster may live outside dataDir (see db/embedded.ts); that place is recorded here.
  const outside = await fs.readFile(path.join(dataDir, 'postgres-location'), 'utf8').catch(() => '')
  if (outside.trim() !== '') await fs.rm(outside.trim(), { recursive: true, force: true })
  await fs.rm(dataDir, { recursive: true, force: true })
}

/** @param {string} url @param {string} sql */
async function adminQuery (url, sql) {
  // DATABASE_URL's TLS parameters as Tessera reads them (libpq's), not as pg 8 would.
  const client = new pg.Client(postgresClientConfig(url))
  await client.connect()
  try { return await client.query(sql) } finally { await client.end() }
}

/** @param {string} url */
async function describe (url) {
  const client = new pg.Client(postgresClientConfig(url))
  await client.connect()
  try {
    const version = (await client.query('SHOW server_version')).rows[0].server_version
    const rows = (await client.query("SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections', 'wal_level')")).rows
    return { version, settings: Object.fromEntries(rows.map((r) => [r.name, r.setting])) }
  } finally {
    await client.end()
  }
}

/** @param {string} url */
async function migrate (url) {
  const connection = connect(url, 1)
  try { await migrateUp(connection.db) } finally { await connection.close() }
}

/**
 * @param {{ root: string, databaseUrl: string | undefined, log: (line: string) => void }} options
 * @returns {Promise<BenchDatabase>}
 */
export async function freshDatabase ({ root, databaseUrl, log }) {
  if (databaseUrl !== undefined) {
    const name = `tessera_t_bench_${process.pid}_${Date.now().toString(36)}`
    await adminQuery(databaseUrl, `CREATE DATABASE "${name}"`)
    const url = new URL(databaseUrl)
    url.pathname = `/${name}`
    log(`scratch database ${name} on the DATABASE_URL server`)
    await migrate(url.toString())
    return {
      url: url.toString(),
      source: 'DATABASE_URL',
      ...await describe(url.toString()),
      close: async () => { await adminQuery(databaseUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) }
    }
  }
  const dataDir = path.join(root, '.data', 'bench')
  await wipeEmbedded(dataDir)
  log(`initialising an embedded Postgres under ${path.relative(process.cwd(), dataDir) || dataDir}`)
  const embedded = await startEmbeddedPostgres(dataDir)
  for (const cluster of embedded.removedClusters) log(`removed ${cluster}, the embedded Postgres cluster of a data directory that no longer exists`)
  await migrate(embedded.url)
  return {
    url: embedded.url,
    source: 'embedded',
    ...await describe(embedded.url),
    close: async () => { await embedded.stop() }
  }
}

#!/usr/bin/env node
// Runs a command with one Postgres for the whole test run: the embedded one
// (started here, or adopted when another run started it; in memory when the
// machine has room, see testDataDir), or the server that DATABASE_URL names.
// A migrated template database is made once; each test file clones it
// (CREATE DATABASE … TEMPLATE) so files are isolated and can run in parallel.
// The command gets TESSERA_TEST_ADMIN_URL, TESSERA_TEST_TEMPLATE,
// TESSERA_TEST_PREFIX and TESSERA_TEST_SIGNING_KEYS (RSA keys made ahead for
// the in-process apps' first keys: services/auth/test/helpers/signing-keys.ts).
//
// Every database of this run is named with its prefix (this machine and this
// process id: packages/testkit, runPrefix), so that two runs can share one
// server: at start a run drops only the leftovers of runs that died, at the
// end its own, and the last live run on the embedded server stops it.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { Kysely, PostgresDialect } from 'kysely'
import { dropStaleTestDatabases, pruneOrphanTestClusters, recordClusterCheckout, runPrefix, runTemplate, TEST_CLUSTER_PREFIX } from '../packages/testkit/dist/index.js'
import { startEmbeddedPostgres, stopEmbeddedPostgres } from '../services/auth/dist/db/embedded.js'
import { migrateUp } from '../services/auth/dist/db/migrate.js'
import { generateSigningKey } from '../services/auth/dist/keys/generate.js'

const [command, ...args] = process.argv.slice(2)
if (command === undefined) {
  process.stderr.write('usage: with-test-db.mjs COMMAND [ARGS…]\n')
  process.exit(2)
}

/** The room a run of `make test` needs in memory: the cluster, its clones and its WAL, many times over. */
const MEMORY_ROOM = 1024 ** 3

/**
 * Where the embedded test cluster lives: in /dev/shm (a tmpfs) when it has
 * room, else .data/test on disk. Its data is thrown away anyway (it runs
 * non-durable, below), and on this VM's disk a clone and its drop cost
 * 0.2–0.5 s of CPU, the largest part in the kernel's ext4 inode allocator
 * (each clone makes ~300 files just after the last drop deleted as many),
 * where in memory they cost 0.03 s (docs/decisions.md, "The fast lane in
 * half a minute"). One directory per checkout, keyed by the disk path it
 * replaces, so runs in one checkout still share one server. Lost at reboot,
 * and made anew (initdb) by the next run. Each records its checkout, and
 * clusters whose checkout is gone are removed here (packages/testkit,
 * test-clusters.ts): a clone made for one CI run would otherwise leave its
 * cluster in memory until reboot.
 */
function testDataDir () {
  const onDisk = resolve('.data/test')
  const inMemory = join('/dev/shm', `${TEST_CLUSTER_PREFIX}${createHash('sha256').update(onDisk).digest('hex').slice(0, 16)}`)
  // First, so that what they took counts as room.
  for (const dir of pruneOrphanTestClusters('/dev/shm', inMemory)) process.stderr.write(`with-test-db: removed ${dir}, the test cluster of a checkout that is gone or unrecorded, with no server running on it\n`)
  let room = 0
  try {
    const shm = statfsSync('/dev/shm')
    room = shm.bavail * shm.bsize
  } catch {
    // no /dev/shm (not Linux): on disk
  }
  if (room < MEMORY_ROOM) return onDisk
  mkdirSync(inMemory, { recursive: true, mode: 0o711 })
  // /dev/shm is everyone's: a directory someone else made first is not ours to use.
  if (statSync(inMemory).uid !== process.getuid()) {
    process.stderr.write(`with-test-db: ${inMemory} belongs to another user; the test cluster stays on disk in ${onDisk}\n`)
    return onDisk
  }
  recordClusterCheckout(inMemory, resolve('.'))
  return inMemory
}

/**
 * Keys made ahead per run: more than the in-process apps any one test file
 * builds on fresh databases (9 at most today), at TESSERA_KEY_BITS' default,
 * which those apps use.
 */
const SIGNING_KEYS_AHEAD = 12
const SIGNING_KEY_BITS = 2048

/** Writes the keys, private halves included, to a file only this user can read; returns its path. */
async function makeSigningKeys (dir) {
  const keys = await Promise.all(Array.from({ length: SIGNING_KEYS_AHEAD }, async () => await generateSigningKey(SIGNING_KEY_BITS)))
  const file = join(dir, 'signing-keys.json')
  const made = keys.map(({ kid, bits, publicJwk, pkcs8 }) => ({ kid, bits, publicJwk, pkcs8: pkcs8.toString('base64url') }))
  writeFileSync(file, JSON.stringify(made), { mode: 0o600 })
  return file
}

/**
 * Runs sharing the embedded server each hold this advisory lock shared for as
 * long as they use it; the last run out is the one that can take it
 * exclusively, and stops the server while holding it. Listing runs by their
 * databases instead left a window: a run that had just adopted the server
 * had none yet, and one finishing then stopped the server under it.
 */
const PRESENCE_LOCK = 7_401_337_001

/**
 * Starts the embedded server, or adopts it, and takes our share of the
 * presence lock. A run finishing at the same moment may be stopping the
 * server (our connection is refused or cut, or our lock waits on its
 * exclusive one until the stop ends it), and two runs may start it at once
 * (one pg_ctl start fails): each is retried until the server is ours to use.
 */
async function joinEmbeddedServer (dir) {
  const deadline = Date.now() + 120_000
  for (;;) {
    let presence
    try {
      const server = await startEmbeddedPostgres(dir)
      for (const cluster of server.removedClusters) process.stderr.write(`with-test-db: removed ${cluster}, the embedded Postgres cluster of a data directory that no longer exists\n`)
      presence = new pg.Client({ connectionString: server.adminUrl })
      // Lost when the last run stops the server at the end, which is expected then.
      presence.on('error', () => {})
      await presence.connect()
      await presence.query('SELECT pg_advisory_lock_shared($1)', [PRESENCE_LOCK])
      return { server, presence }
    } catch (err) {
      await presence?.end().catch(() => {})
      if (Date.now() > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, 200 + Math.random() * 300))
    }
  }
}

const dataDir = process.env.DATABASE_URL ? undefined : testDataDir()
const joined = dataDir === undefined ? undefined : await joinEmbeddedServer(dataDir)
const embedded = joined?.server
const adminUrl = embedded?.adminUrl ?? process.env.DATABASE_URL
const prefix = runPrefix()
const template = runTemplate(prefix)

async function admin (sql) {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try { return await client.query(sql) } finally { await client.end() }
}

let code = 1
const keysDir = mkdtempSync(join(tmpdir(), 'tessera-test-keys-'))
try {
  // Generated while Postgres makes the template.
  const signingKeys = makeSigningKeys(keysDir)
  if (embedded) {
    // This cluster only ever holds test databases, so it can run with Postgres'
    // non-durable settings (https://www.postgresql.org/docs/current/non-durability.html):
    // cloning a test database then takes a third of the time and dropping it a
    // tenth. Never on a server that DATABASE_URL names.
    for (const setting of ['fsync', 'full_page_writes', 'synchronous_commit']) await admin(`ALTER SYSTEM SET ${setting} = off`)
    // Each clone writes the template (~8 MB) to the WAL: checkpoint often
    // (cheap without fsync) so the WAL kept in memory stays small.
    await admin("ALTER SYSTEM SET max_wal_size = '128MB'")
    await admin('SELECT pg_reload_conf()')
    // Databases named before runs had a prefix of their own: only this
    // checkout's earlier runs ever made any on its embedded server.
    const unowned = await admin("SELECT datname FROM pg_database WHERE datname ~ '^tessera_(t_[0-9a-f]{12}|template_[0-9]+)$'")
    for (const { datname } of unowned.rows) await admin(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`)
  }
  await dropStaleTestDatabases(adminUrl)
  await admin(`CREATE DATABASE "${template}"`)
  const url = new URL(adminUrl)
  url.pathname = `/${template}`
  const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url.toString(), max: 1 }) }) })
  await migrateUp(db)
  await db.destroy()
  const signingKeysFile = await signingKeys
  code = await new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: 'inherit',
      env: { ...process.env, TESSERA_TEST_ADMIN_URL: adminUrl, TESSERA_TEST_TEMPLATE: template, TESSERA_TEST_PREFIX: prefix, TESSERA_TEST_SIGNING_KEYS: signingKeysFile }
    })
    for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
    child.on('close', (exit) => resolve(exit ?? 1))
  })
} finally {
  rmSync(keysDir, { recursive: true, force: true })
  // Ours only: the template, and any clone a killed test file left behind.
  await dropStaleTestDatabases(adminUrl).catch(() => undefined)
  // Whoever started the embedded server, the last run out stops it; a run
  // still going keeps it. Our own shared hold does not stand in our way.
  if (joined !== undefined) {
    const alone = await joined.presence.query('SELECT pg_try_advisory_lock($1) AS alone', [PRESENCE_LOCK]).then((r) => r.rows[0].alone === true, () => false)
    if (alone) await stopEmbeddedPostgres(dataDir)
    await joined.presence.end().catch(() => undefined)
  }
}
process.exit(code)

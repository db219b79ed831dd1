/**
 * The embedded Postgres belongs to its data directory: removing the directory
 * starts afresh, and a cluster that refuses the directory's password is named
 * as such and not left running.
 */
import t, { type Test } from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { within } from '../helpers/http.js'
import { clusterDir, removeDataDirAtEnd, removeOutsideClusterAtEnd, runCli } from '../helpers/server.js'

t.setTimeout(300_000)

function postgresRunningOn (pgdata: string): boolean {
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').some((line) => line.includes('postgres') && line.includes(pgdata))
}

/** Whether a `pg_ctl status` on pgdata runs now: read from /proc, which takes a few ms where ps takes tens. */
function pgCtlStatusOn (pgdata: string): boolean {
  return readdirSync('/proc').some((pid) => {
    if (!/^\d+$/.test(pid)) return false
    const args = (() => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0') } catch { return [] } })()
    return args[0]?.endsWith('/pg_ctl') === true && args[1] === 'status' && args.includes(pgdata)
  })
}

/** A data directory in a 0700 directory, as CI's clone is: as root the postgres user cannot enter it. */
function dataDirFor (t: Test): { dataDir: string, env: Record<string, string> } {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tessera-datadir-'))
  removeDataDirAtEnd(t, dataDir)
  return { dataDir, env: { TESSERA_DATA_DIR: dataDir } }
}

/** A cluster directory as a start killed midway leaves it at `dir`; `old`: untouched for twenty minutes. Removed at the test's end. */
function setAside (t: Test, dir: string, age: 'old' | 'new'): string {
  mkdirSync(dir)
  writeFileSync(path.join(dir, 'PG_VERSION'), '17\n')
  const old = new Date(Date.now() - 20 * 60_000)
  if (age === 'old') utimesSync(dir, old, old)
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** Root only: as another user every cluster is inside its data directory and leaves with it. A new object for each test: tap's --grep writes its skip into the one it is given. */
const asRoot = (): { skip: string | false } => ({ skip: process.getuid?.() !== 0 && 'not root: every cluster is inside its data directory and leaves with it' })

/** A data directory whose cluster root keeps outside it, started once; the cluster is stopped (if it runs) and removed at the test's end, even once the directory is gone. */
async function outsideCluster (t: Test): Promise<{ dataDir: string, env: Record<string, string>, cluster: string }> {
  const { dataDir, env } = dataDirFor(t)
  t.equal((await runCli(['db', 'start'], env)).code, 0)
  const cluster = clusterDir(dataDir)
  removeOutsideClusterAtEnd(t, cluster)
  return { dataDir, env, cluster }
}

/** Untouched for two minutes: a start leaves a cluster touched within the last one alone (another start may be setting it up). */
function settled (...clusters: string[]): void {
  const old = new Date(Date.now() - 2 * 60_000)
  for (const cluster of clusters) utimesSync(cluster, old, old)
}

async function selectOne (env: Record<string, string>): Promise<number | undefined> {
  const url = (await runCli(['db', 'url'], env)).stdout.trim()
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one
  } finally {
    await client.end()
  }
}

t.test('removing the data directory starts afresh, also when root keeps the cluster outside it', async (t) => {
  const { dataDir, env } = dataDirFor(t)
  const started = await runCli(['db', 'start'], env)
  t.equal(started.code, 0, started.stderr)
  // The lines of db start are for a person's terminal (its scrollback, a shared screen): the URL without its password, and where the password is.
  const password = readFileSync(path.join(dataDir, 'postgres.password'), 'utf8').trim()
  const url = new URL((await runCli(['db', 'url'], env)).stdout.trim())
  t.equal(decodeURIComponent(url.password), password, 'db url prints the whole URL, for a program to read')
  t.equal((JSON.parse((await runCli(['db', 'start', '--json'], env)).stdout) as { url: string }).url, url.toString(), 'and so does --json (make stack reads it)')
  url.password = ''
  t.equal(started.stdout, `embedded Postgres started on 127.0.0.1:${url.port}\nURL: ${url.toString()} (the password is in ${path.join(dataDir, 'postgres.password')}; \`tessera db url\` prints the URL with it)\n`)
  t.notMatch(started.stdout, password, 'no password printed')
  const first = clusterDir(dataDir)
  if (process.getuid?.() === 0) {
    t.not(first, path.join(dataDir, 'postgres'), 'as root, in a directory the postgres user cannot enter, the cluster is kept outside it')
  } else {
    t.comment('not root: the cluster is inside the data directory, and leaves with it')
  }
  // A file of the first cluster's own (an inode number is no identity: a file made after a removal may get it again).
  const marker = path.join(first, 'made-by-the-first-start')
  writeFileSync(marker, '')

  // Removed while its Postgres still runs, as `rm -rf .data` after `make run` was stopped with kill -9 would leave it.
  rmSync(dataDir, { recursive: true, force: true })
  mkdirSync(dataDir, { mode: 0o700 })
  const again = await runCli(['db', 'start'], env)
  t.equal(again.code, 0, `a new start succeeds: ${again.stderr}`)
  t.match(again.stdout, /embedded Postgres started/, 'on a cluster of its own, not the orphan still running')
  t.equal(clusterDir(dataDir), first, 'at the same place')
  t.ok(existsSync(path.join(first, 'PG_VERSION')) && !existsSync(marker), 'made anew')
  t.equal(await selectOne(env), 1, 'and it accepts the new data directory\'s password')
})

t.test('a cluster that refuses the data directory\'s password is named, and the Postgres this start started is stopped', async (t) => {
  const { dataDir, env } = dataDirFor(t)
  t.equal((await runCli(['db', 'start'], env)).code, 0)
  t.equal((await runCli(['db', 'stop'], env)).code, 0)
  const passwordFile = path.join(dataDir, 'postgres.password')
  const password = readFileSync(passwordFile, 'utf8')
  writeFileSync(passwordFile, 'not-the-password\n')

  const refused = await runCli(['db', 'start'], env)
  t.equal(refused.code, 1)
  t.match(refused.stderr, `refuses the password in ${passwordFile} (was that file replaced?)`)
  t.equal(refused.stderr.trim().split('\n').length, 1, `one line: ${refused.stderr}`)
  t.notOk(postgresRunningOn(clusterDir(dataDir)), 'the server it started is not left running')

  writeFileSync(passwordFile, password)
  t.equal((await runCli(['db', 'start'], env)).code, 0, 'with the file restored, the cluster and its data are there')
  t.equal(await selectOne(env), 1)
})

t.test('a cluster stays where it was made when the data directory becomes reachable, and one out of reach is named, not replaced', async (t) => {
  const root = process.getuid?.() === 0
  const { dataDir, env } = dataDirFor(t)
  const inside = path.join(dataDir, 'postgres')
  t.equal((await runCli(['db', 'start'], env)).code, 0)
  const first = clusterDir(dataDir)
  const marker = path.join(first, 'made-by-the-first-start')
  writeFileSync(marker, '')
  t.equal((await runCli(['db', 'stop'], env)).code, 0)

  // The fix an operator reaches for when the postgres user cannot enter the checkout.
  chmodSync(dataDir, 0o711)
  const again = await runCli(['db', 'start'], env)
  t.equal(again.code, 0, again.stderr)
  t.equal(clusterDir(dataDir), first, 'the same cluster')
  t.ok(existsSync(marker), 'with what it held')
  if (root) t.notOk(existsSync(path.join(inside, 'PG_VERSION')), 'no second, empty cluster made inside')
  t.equal(await selectOne(env), 1)
  t.equal((await runCli(['db', 'stop'], env)).code, 0)

  // The reverse, from a data directory the postgres user could enter: its cluster inside, then out of reach.
  const reachable = dataDirFor(t)
  chmodSync(reachable.dataDir, 0o711)
  t.equal((await runCli(['db', 'start'], reachable.env)).code, 0)
  t.equal(clusterDir(reachable.dataDir), path.join(reachable.dataDir, 'postgres'), 'inside, where the postgres user can reach it')
  t.equal((await runCli(['db', 'stop'], reachable.env)).code, 0)
  chmodSync(reachable.dataDir, 0o700)
  const outOfReach = await runCli(['db', 'start'], reachable.env)
  if (root) {
    t.equal(outOfReach.code, 1)
    t.match(outOfReach.stderr, `the embedded Postgres cluster in ${path.join(reachable.dataDir, 'postgres')} is out of the postgres user's reach`)
    t.notOk(existsSync(path.join(reachable.dataDir, 'postgres-location')), 'no empty cluster made elsewhere')
  } else {
    t.equal(outOfReach.code, 0, 'not root: Postgres runs as this user, whom a mode 0700 does not keep out')
  }
})

t.test('starts at the same moment on a new data directory all succeed, on one cluster that one of them started', async (t) => {
  // Before, each ran initdb in the same directory: all but one failed on "exists but is not empty",
  // and a failing initdb's clean-up could leave a directory every later start refused.
  for (const mode of [0o700, 0o711]) {
    const { dataDir, env } = dataDirFor(t)
    chmodSync(dataDir, mode)
    const starts = await Promise.all([1, 2, 3, 4].map(async () => await runCli(['db', 'start'], env)))
    t.same(starts.map((start) => start.code), [0, 0, 0, 0], starts.map((start) => start.stderr).join(''))
    t.equal(starts.filter((start) => /embedded Postgres started/.test(start.stdout)).length, 1, 'one of them started it')
    t.equal(starts.filter((start) => /embedded Postgres already running/.test(start.stdout)).length, 3, 'the others joined it once it was ready')
    const urls = new Set(starts.map((start) => /^URL: (\S+)/m.exec(start.stdout)?.[1]))
    t.ok(urls.size === 1 && !urls.has(undefined), 'the same server', { urls: [...urls] })
    const cluster = clusterDir(dataDir)
    t.same(readdirSync(path.dirname(cluster)).filter((name) => name.startsWith(`${path.basename(cluster)}.initdb-`)), [], 'no cluster made aside is left behind')
    t.equal(await selectOne(env), 1)
  }
})

t.test('a cluster directory holding files but no cluster is named, not initialised over', async (t) => {
  const { dataDir, env } = dataDirFor(t)
  chmodSync(dataDir, 0o711)
  mkdirSync(path.join(dataDir, 'postgres'), { mode: 0o700 })
  writeFileSync(path.join(dataDir, 'postgres', 'left-behind'), '')
  const start = await runCli(['db', 'start'], env)
  t.equal(start.code, 1)
  t.match(start.stderr, `${path.join(dataDir, 'postgres')} holds files but no Postgres cluster`)
  t.ok(existsSync(path.join(dataDir, 'postgres', 'left-behind')), 'what it held is left for the operator')
})

t.test('what a start killed midway set aside beside the cluster is removed by a later start once its process is gone and ten minutes have passed', async (t) => {
  const { dataDir, env } = dataDirFor(t)
  t.equal((await runCli(['db', 'start'], env)).code, 0)
  t.equal((await runCli(['db', 'stop'], env)).code, 0)
  const cluster = clusterDir(dataDir)
  const gone = spawnSync('true').pid
  t.ok(gone !== undefined && gone > 0)
  const aside = (name: string, age: 'old' | 'new'): string => path.basename(setAside(t, `${cluster}.${name}`, age))
  const abandoned = [aside(`initdb-${gone}-0a1b2c3d`, 'old'), aside(`discarded-${gone}`, 'old')]
  const kept = [
    aside(`initdb-${gone}-4e5f6a7b`, 'new'),
    aside(`initdb-${process.pid}-8c9d0e1f`, 'old'),
    aside('initdb-notes', 'old')
  ]
  const start = await runCli(['db', 'start'], env)
  t.equal(start.code, 0, start.stderr)
  const beside = readdirSync(path.dirname(cluster))
  t.same(abandoned.filter((name) => beside.includes(name)), [], 'a gone start\'s cluster made or discarded aside, untouched for ten minutes, is removed')
  t.same(kept.filter((name) => beside.includes(name)), kept, 'one touched within ten minutes, one whose start still runs, and a name not of that form stay')
  t.equal(await selectOne(env), 1, 'the cluster itself is untouched')
})

t.test('a start deletes the clusters of removed data directories under the temporary directory, once no server runs on them; others are left', asRoot(), async (t) => {
  const made = async (): ReturnType<typeof outsideCluster> => await outsideCluster(t)
  const removed = await made()
  t.equal(readFileSync(`${removed.cluster}.datadir`, 'utf8'), `${realpathSync(removed.dataDir)}\n`, 'a cluster kept outside records its data directory')
  const running = await made()
  const kept = await made()
  const unrecorded = await made()
  const elsewhere = await made()
  for (const { env } of [removed, kept, unrecorded, elsewhere]) t.equal((await runCli(['db', 'stop'], env)).code, 0)
  rmSync(`${unrecorded.cluster}.datadir`)
  // A checkout outside the temporary directory that is not there now: moved, or on a volume not mounted.
  writeFileSync(`${elsewhere.cluster}.datadir`, '/srv/a-checkout-moved-away/.data\n')
  for (const { dataDir } of [removed, running, unrecorded, elsewhere]) rmSync(dataDir, { recursive: true, force: true })
  const stop = await runCli(['db', 'stop'], removed.env)
  t.equal(stop.stdout, 'embedded Postgres was not running\n', stop.stderr)
  t.notOk(existsSync(removed.dataDir), 'db stop makes nothing where there is no cluster (it made the data directory and a cluster directory for it)')
  settled(removed.cluster, running.cluster, kept.cluster, unrecorded.cluster, elsewhere.cluster)
  // What a prune killed in its `rm` leaves: the cluster set aside, its records already removed.
  const gone = spawnSync('true').pid ?? 0
  const leftAside = (name: string, age: 'old' | 'new'): string => setAside(t, path.join(path.dirname(removed.cluster), name), age)
  const abandonedAside = leftAside(`data-0123456789abcdef.discarded-${gone}`, 'old')
  const recentAside = leftAside(`data-fedcba9876543210.discarded-${gone}`, 'new')

  const other = dataDirFor(t)
  t.equal((await runCli(['db', 'start'], other.env)).code, 0)
  t.notOk(existsSync(abandonedAside), 'a cluster a gone prune set aside, untouched for ten minutes, is removed')
  t.ok(existsSync(recentAside), 'one touched within ten minutes is left')
  t.notOk(existsSync(removed.cluster), 'the cluster of a removed data directory, stopped, is deleted')
  t.notOk(existsSync(`${removed.cluster}.owner`) || existsSync(`${removed.cluster}.datadir`), 'with what lay beside it')
  t.ok(postgresRunningOn(running.cluster), 'one whose server still runs is left, running')
  t.ok(existsSync(path.join(kept.cluster, 'PG_VERSION')), 'one whose data directory is there is left')
  t.ok(existsSync(path.join(unrecorded.cluster, 'PG_VERSION')), 'one that does not record its data directory is left')
  t.ok(existsSync(path.join(elsewhere.cluster, 'PG_VERSION')), 'one whose data directory was outside the temporary directory is left')

  const postmaster = Number(readFileSync(path.join(running.cluster, 'postmaster.pid'), 'utf8').split('\n')[0])
  process.kill(postmaster, 'SIGINT')
  t.ok(await within(30_000, async () => !postgresRunningOn(running.cluster)) !== undefined, 'its server stopped')
  settled(running.cluster)
  t.equal((await runCli(['db', 'start'], other.env)).code, 0, 'a later start, adopting the running server')
  t.notOk(existsSync(running.cluster), 'once stopped, it is deleted by the next start')
  t.equal(await selectOne(other.env), 1, 'the starting data directory\'s own cluster serves')

  const moved = `${kept.dataDir}-moved`
  // Settled above and, once renamed, with its recorded directory gone: any
  // other test file's start in that moment would prune it as a removed
  // checkout's (seen once in make test). Touched, it is left for a minute.
  const now = new Date()
  utimesSync(kept.cluster, now, now)
  renameSync(kept.dataDir, moved)
  removeDataDirAtEnd(t, moved)
  t.equal((await runCli(['db', 'start'], { TESSERA_DATA_DIR: moved })).code, 0, 'a checkout moved starts its own cluster')
  t.ok(readFileSync(`${kept.cluster}.datadir`, 'utf8').split('\n').includes(realpathSync(moved)), 'whose record follows it')
})

t.test('a data directory whose postgres.password was removed keeps its cluster: the start names the refused password, as for a replaced one', async (t) => {
  // As root the cluster kept outside was taken for a removed data directory's (the start made the password) and deleted, users and all, while the directory and its KEK were there.
  const { dataDir, env } = dataDirFor(t)
  t.equal((await runCli(['db', 'start'], env)).code, 0)
  t.equal((await runCli(['db', 'stop'], env)).code, 0)
  const marker = path.join(clusterDir(dataDir), 'made-by-the-first-start')
  writeFileSync(marker, '')
  const passwordFile = path.join(dataDir, 'postgres.password')
  const password = readFileSync(passwordFile, 'utf8')
  rmSync(passwordFile)

  const refused = await runCli(['db', 'start'], env)
  t.equal(refused.code, 1, refused.stdout)
  t.match(refused.stderr, `refuses the password in ${passwordFile} (was that file replaced?)`)
  t.ok(existsSync(marker), 'the cluster is kept, with what it held')
  writeFileSync(passwordFile, password, { mode: 0o600 })
  t.equal((await runCli(['db', 'start'], env)).code, 0, 'with the file restored, it serves again')
  t.equal(await selectOne(env), 1)
})

t.test('a copy of a data directory runs on its cluster, and removing either of them does not delete the cluster the other still uses', asRoot(), async (t) => {
  const original = await outsideCluster(t)
  t.equal((await runCli(['db', 'stop'], original.env)).code, 0)
  const marker = path.join(original.cluster, 'made-by-the-first-start')
  writeFileSync(marker, '')
  // A checkout copied to try something on the copy (cp -a): its postgres-location names the original's cluster.
  const copyOf = (name: string): { dir: string, env: Record<string, string> } => {
    const dir = `${original.dataDir}-${name}`
    execFileSync('cp', ['-a', original.dataDir, dir])
    // Its own cluster too, should a start have made one.
    removeDataDirAtEnd(t, dir)
    return { dir, env: { TESSERA_DATA_DIR: dir } }
  }
  const other = dataDirFor(t)
  const prune = async (): Promise<void> => {
    settled(original.cluster)
    const start = await runCli(['db', 'start'], other.env)
    t.equal(start.code, 0, start.stderr)
  }

  const tried = copyOf('tried')
  t.equal((await runCli(['db', 'start'], tried.env)).code, 0)
  t.equal(clusterDir(tried.dir), original.cluster, 'the copy runs on the same cluster')
  t.equal((await runCli(['db', 'stop'], tried.env)).code, 0)
  rmSync(tried.dir, { recursive: true })
  await prune()
  t.ok(existsSync(marker), 'the copy removed, the cluster the original still uses is kept')
  t.equal(await selectOne(original.env), 1)
  t.equal((await runCli(['db', 'stop'], original.env)).code, 0)

  const kept = copyOf('kept')
  t.equal((await runCli(['db', 'start'], kept.env)).code, 0)
  t.equal((await runCli(['db', 'stop'], kept.env)).code, 0)
  t.equal((await runCli(['db', 'start'], original.env)).code, 0)
  t.equal((await runCli(['db', 'stop'], original.env)).code, 0)
  rmSync(original.dataDir, { recursive: true })
  await prune()
  t.ok(existsSync(marker), 'the original removed, the cluster its copy still uses is kept')
  t.equal(await selectOne(kept.env), 1)
})

t.test('a record of a data directory that cannot be read for certain is not taken for a removed one', asRoot(), async (t) => {
  // A directory whose name ends in a space: read back trimmed, its record named one that does not exist.
  const spaced = dataDirFor(t)
  const spacedDir = path.join(spaced.dataDir, 'data ')
  const spacedEnv = { TESSERA_DATA_DIR: spacedDir }
  t.equal((await runCli(['db', 'start'], spacedEnv)).code, 0)
  const spacedCluster = clusterDir(spacedDir)
  removeDataDirAtEnd(t, spacedDir)
  t.equal((await runCli(['db', 'stop'], spacedEnv)).code, 0)
  // Records edited by hand: a path through `..` (out of the temporary directory), one that is not absolute, one whose directory is behind a symlink loop.
  const edited = await Promise.all([1, 2, 3].map(async () => await outsideCluster(t)))
  for (const { env } of edited) t.equal((await runCli(['db', 'stop'], env)).code, 0)
  const temporary = realpathSync(tmpdir())
  const loop = path.join(edited[2]?.dataDir ?? '', 'loop')
  symlinkSync(loop, loop)
  const records = [`${temporary}/../srv/a-checkout/.data\n`, 'tessera-datadir-relative/.data\n', `${loop}/.data\n`]
  edited.forEach(({ cluster }, i) => { writeFileSync(`${cluster}.datadir`, records[i] ?? '') })
  for (const { dataDir } of edited.slice(0, 2)) rmSync(dataDir, { recursive: true, force: true })
  settled(spacedCluster, ...edited.map(({ cluster }) => cluster))

  const other = dataDirFor(t)
  t.equal((await runCli(['db', 'start'], other.env)).code, 0)
  t.ok(existsSync(path.join(spacedCluster, 'PG_VERSION')), 'the cluster of a directory whose name ends in a space is kept')
  t.equal(await selectOne(spacedEnv), 1)
  for (const [i, { cluster }] of edited.entries()) t.ok(existsSync(path.join(cluster, 'PG_VERSION')), `one recorded as ${JSON.stringify(records[i])} is kept`)
})

t.test('a start goes on when TMPDIR names a directory that does not exist', async (t) => {
  // As root the prune of removed data directories looked for the temporary directory and failed the start.
  const { env } = dataDirFor(t)
  t.equal((await runCli(['db', 'start'], env)).code, 0)
  t.equal((await runCli(['db', 'stop'], env)).code, 0)
  const start = await runCli(['db', 'start'], { ...env, TMPDIR: '/nonexistent-tmpdir' })
  t.equal(start.code, 0, start.stderr)
  t.equal(await selectOne(env), 1)
})

t.test('a start that finds the server stopping (a make run draining after Ctrl-C, a db stop at the same moment) waits it out and starts it anew', async (t) => {
  const { dataDir, env } = dataDirFor(t)
  t.equal((await runCli(['db', 'start'], env)).code, 0)
  const cluster = clusterDir(dataDir)
  // A smart shutdown (SIGTERM) waits for the sessions open: this one holds the server in 'stopping'.
  const holder = new pg.Client({ connectionString: (await runCli(['db', 'url'], env)).stdout.trim() })
  await holder.connect()
  holder.on('error', () => {})
  const postmaster = Number(readFileSync(path.join(cluster, 'postmaster.pid'), 'utf8').split('\n')[0])
  process.kill(postmaster, 'SIGTERM')
  t.ok(await within(15_000, async () => readFileSync(path.join(cluster, 'postmaster.pid'), 'utf8').split('\n')[7]?.trim() === 'stopping') !== undefined, 'the server is stopping')
  const start = runCli(['db', 'start'], env)
  // Let go only once the start asks pg_ctl about the server (it found it running, then polls it until ready): a `pg_ctl status` lives a few ms of every 100.
  t.ok(await within(30_000, async () => pgCtlStatusOn(cluster), 1) !== undefined, 'the start found the server')
  await holder.end()
  const started = await start
  t.equal(started.code, 0, started.stderr)
  t.match(started.stdout, /embedded Postgres started/, 'it started the server anew once the old one had stopped')
  t.equal(await selectOne(env), 1)
})

t.test('a cluster initialised with max_connections 200 is started with room for TESSERA_WORKERS', async (t) => {
  const { env } = dataDirFor(t)
  const maxConnections = async (): Promise<string | undefined> => {
    const client = new pg.Client({ connectionString: (await runCli(['db', 'url'], env)).stdout.trim() })
    await client.connect()
    try {
      return (await client.query<{ max_connections: string }>('SHOW max_connections')).rows[0]?.max_connections
    } finally {
      await client.end()
    }
  }
  const small = await runCli(['db', 'start'], { ...env, TESSERA_WORKERS: '2' })
  t.equal(small.code, 0, small.stderr)
  t.equal(await maxConnections(), '200', 'two workers: as initdb left it')
  t.equal((await runCli(['db', 'stop'], env)).code, 0)
  // 60 workers hold 60 × 4 + 6 = 246, past 200; 24 more for commands.
  const large = await runCli(['db', 'start'], { ...env, TESSERA_WORKERS: '60' })
  t.equal(large.code, 0, large.stderr)
  t.equal(await maxConnections(), '270', 'the same cluster, started for 60 workers')
})

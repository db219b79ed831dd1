/**
 * Runs that share one Postgres (a second `make test` in the same checkout,
 * worktrees naming one DATABASE_URL) leave each other's databases alone: a
 * run drops its own and those of runs that died, never a live run's; and
 * the embedded server stays up while any run uses it.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import pg from 'pg'
import { dropStaleTestDatabases, listTestDatabases, runOf, runPrefix, runProcess, runTemplate, spawnProcess, TEST_CLUSTER_PREFIX, testDatabaseEnv } from '../dist/index.js'

const repoRoot = fileURLToPath(new URL('../../..', import.meta.url))

async function admin (sql) {
  const client = new pg.Client({ connectionString: testDatabaseEnv().adminUrl })
  await client.connect()
  try { return await client.query(sql) } finally { await client.end() }
}

/** The id of a process that has exited. */
async function deadPid () {
  const child = spawnProcess(process.execPath, ['-e', ''])
  await new Promise((resolve) => child.child.once('close', resolve))
  return child.child.pid
}

test('a run prefix names this machine and the run\'s process, and is read back', () => {
  const prefix = runPrefix(4242)
  assert.match(prefix, /^tessera_t_[0-9a-f]{8}_4242_$/)
  assert.deepEqual(runOf(`${prefix}0123456789ab`), { machine: prefix.slice(10, 18), pid: 4242 })
  assert.equal(runTemplate(prefix), `${prefix}template`)
  assert.ok(runTemplate(prefix).length <= 63, 'within Postgres\' name length')
  for (const other of ['tessera', 'tessera_t_0123456789ab', 'tessera_t_bench_4242_x', 'tessera_template_4242']) assert.equal(runOf(other), undefined, other)
})

test('only our own and dead runs\' databases are dropped; a live run\'s, another machine\'s and the bench\'s stay', async (t) => {
  const live = spawnProcess(process.execPath, ['-e', 'setInterval(() => {}, 1000)'])
  t.after(async () => { await live.stop('SIGKILL') })
  const dead = await deadPid()
  const names = {
    ours: `${runPrefix()}ours`,
    dead: `${runPrefix(dead)}dead`,
    live: `${runPrefix(live.child.pid)}live`,
    otherMachine: runPrefix(dead).replace(/^tessera_t_(.)/, (_, first) => `tessera_t_${first === '0' ? '1' : '0'}`) + 'x',
    bench: `tessera_t_bench_${dead}_x`
  }
  for (const name of Object.values(names)) await admin(`CREATE DATABASE "${name}"`)
  t.after(async () => { for (const name of Object.values(names)) await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) })

  const dropped = await dropStaleTestDatabases(testDatabaseEnv().adminUrl)
  assert.deepEqual(dropped.filter((name) => Object.values(names).includes(name)).sort(), [names.dead, names.ours].sort())
  const left = await listTestDatabases(testDatabaseEnv().adminUrl)
  for (const kept of [names.live, names.otherMachine, names.bench]) assert.ok(left.includes(kept), `${kept} is kept`)
  assert.ok(left.includes(testDatabaseEnv().template), 'this run\'s template is kept')
})

test('a second run on the same server leaves this run\'s databases and server alone, and cleans up after itself', async (t) => {
  const { adminUrl, template, prefix } = testDatabaseEnv()
  const leftover = `${runPrefix(await deadPid())}leftover`
  await admin(`CREATE DATABASE "${leftover}"`)
  t.after(async () => { await admin(`DROP DATABASE IF EXISTS "${leftover}" WITH (FORCE)`) })

  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('TESSERA_TEST_')))
  const second = await runProcess(process.execPath, ['scripts/with-test-db.mjs', process.execPath, '-e', 'console.log(process.env.TESSERA_TEST_PREFIX)'], { cwd: repoRoot, env })
  assert.equal(second.code, 0, second.stderr)
  const secondPrefix = second.stdout.trim()
  assert.match(secondPrefix, /^tessera_t_[0-9a-f]{8}_[0-9]+_$/)
  assert.notEqual(secondPrefix, prefix)

  const left = await listTestDatabases(adminUrl)
  assert.ok(left.includes(template), 'this run\'s template survives the second run')
  assert.equal(left.filter((name) => name.startsWith(secondPrefix)).length, 0, 'the second run dropped its own databases')
  assert.ok(!left.includes(leftover), 'the second run dropped a dead run\'s leftover')
  const clone = `${prefix}after_second_run`
  await admin(`CREATE DATABASE "${clone}" TEMPLATE "${template}"`)
  await admin(`DROP DATABASE "${clone}"`)
})

test('runs that start and end at the same moments on one embedded server each get to use it, and the last one out stops it', async (t) => {
  // A checkout of its own, so the runs share a cluster that no other run uses.
  const checkout = mkdtempSync(join(tmpdir(), 'tessera-runs-'))
  const onDisk = join(checkout, '.data/test')
  const inMemory = join('/dev/shm', `${TEST_CLUSTER_PREFIX}${createHash('sha256').update(onDisk).digest('hex').slice(0, 16)}`)
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('TESSERA_TEST_') && name !== 'DATABASE_URL'))
  // Where the embedded server keeps the cluster (services/auth/src/db/embedded.ts): in the data directory, or where it notes.
  const pgdata = () => {
    const dataDir = existsSync(inMemory) ? inMemory : onDisk
    const location = join(dataDir, 'postgres-location')
    return existsSync(location) ? readFileSync(location, 'utf8').trim() : join(dataDir, 'postgres')
  }
  const run = async (delayMs) => {
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    return await runProcess(process.execPath, [join(repoRoot, 'scripts/with-test-db.mjs'), process.execPath, '-e', ''], { cwd: checkout, env })
  }
  t.after(async () => {
    // Alone, this run is the last one out: it stops the server if a failed run above left it up.
    await run(0)
    rmSync(`${pgdata()}.owner`, { force: true })
    rmSync(pgdata(), { recursive: true, force: true })
    rmSync(checkout, { recursive: true, force: true })
    rmSync(inMemory, { recursive: true, force: true })
  })
  // Staggered, so that one run's end meets another's start (before, a run
  // ending then stopped the server under a run that had just adopted it:
  // "the database system is shutting down"), and two first runs start it at once.
  for (let wave = 0; wave < 3; wave++) {
    const runs = await Promise.all([0, 0, 400, 800, 1200].map(run))
    runs.forEach((result, i) => { assert.equal(result.code, 0, `wave ${wave}, run ${i}: ${result.stderr}`) })
  }
  assert.ok(existsSync(join(pgdata(), 'PG_VERSION')), `the runs' cluster is at ${pgdata()}`)
  assert.equal(existsSync(join(pgdata(), 'postmaster.pid')), false, 'no server left running')
})

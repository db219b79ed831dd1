/**
 * An instance under a container's limits, as Kubernetes' `limits` or
 * compose's `cpus` and `mem_limit` set them, in real cgroups v1:
 * - a CPU quota of 0.5 cores counts one core (util/cpu-budget.ts), so it
 *   forks one HTTP worker and its hashing process runs one hash at a time,
 *   where os.availableParallelism() (libuv 1.52) counts every core of the
 *   machine;
 * - a memory limit below what its workers and hashes need is warned of at
 *   start (util/memory-limit.ts), since what follows is an OOM kill under
 *   load.
 * Making a cgroup needs root and cgroup v1's cpu and memory hierarchies:
 * CI's VM has them, and elsewhere the test fails saying which is missing.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createTestDatabase } from '../helpers/db.js'
import { loginOver, signUpOver, sleep } from '../helpers/http.js'
import { instancePids, startServer } from '../helpers/server.js'

const CPU_HIERARCHY = '/sys/fs/cgroup/cpu'
const MEMORY_HIERARCHY = '/sys/fs/cgroup/memory'

const pidsIn = (cgroup: string): number[] => readFileSync(join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l !== '').map(Number)

/**
 * A cgroup v1 in `hierarchy` with `settings` written in order, removed when
 * the test ends, passed or failed. A cgroup with a process in it cannot be
 * removed: the server's processes left in it (its workers and hashing
 * process end themselves after the primary, but not at once) are this
 * test's, killed by pid.
 */
function cgroupOf (t: Test, hierarchy: string, settings: Array<[file: string, value: string]>): string {
  if (process.getuid?.() !== 0) throw new Error(`making a cgroup needs root; this test runs as uid ${String(process.getuid?.())} (CI runs it as root)`)
  const [first = ''] = settings[0] ?? []
  if (!existsSync(join(hierarchy, first))) throw new Error(`no cgroup v1 hierarchy with ${first} at ${hierarchy} (this machine is cgroup v2 only?)`)
  const cgroup = join(hierarchy, `tessera-test-${process.pid}`)
  mkdirSync(cgroup)
  t.teardown(async () => {
    for (let pids = pidsIn(cgroup); pids.length > 0; pids = pidsIn(cgroup)) {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // exited between the listing and the kill
        }
      }
      await sleep(20)
    }
    rmdirSync(cgroup)
  })
  for (const [file, value] of settings) writeFileSync(join(cgroup, file), value)
  return cgroup
}

async function servesALogin (t: Test, url: string, what: string): Promise<void> {
  await signUpOver(url, 'limited-user', 'correct horse battery staple')
  const tokens = await loginOver(url, 'limited-user', 'correct horse battery staple')
  t.type(tokens.access_token, 'string', what)
}

const linesOf = (server: { output: () => string }, msg: RegExp): Array<Record<string, unknown>> =>
  server.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((line) => msg.test(String(line.msg)))

t.test('half a core of a cgroup v1 quota: one HTTP worker, one hash at a time, and it serves', async (t) => {
  const cgroup = cgroupOf(t, CPU_HIERARCHY, [['cpu.cfs_period_us', '100000'], ['cpu.cfs_quota_us', '50000']])
  const databaseUrl = await createTestDatabase(t)
  // Half a core for the primary, a worker and the hashing process to start on: slower than the default allows on a loaded machine
  // (about 7 s here at a load of 8). Under the file's 180 s, so that a start that never comes fails this test, whose teardown
  // empties and removes the cgroup, rather than tap's timeout, which ends the process before any teardown runs.
  const server = await startServer(t, { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_RATE_LIMIT: '1000000' }, { cgroup, timeoutMs: 120_000 })

  t.match(linesOf(server, /^tessera is serving$/), [{
    workers: 1,
    hash_concurrency: 1,
    cores: 1,
    cores_from: new RegExp(`^CPU quota 0\\.5 rounded up \\(cgroup v1 ${cgroup}: cpu\\.cfs_quota_us 50000, cpu\\.cfs_period_us 100000\\), within CPU affinity \\d+$`)
  }], 'the start line says how many cores it counted, and from what')

  // What runs, not only what the line says: every process of the instance is in the cgroup, one of them an HTTP worker.
  const pids = instancePids(server.process.pid ?? 0)
  t.same(pidsIn(cgroup).sort(), [...pids].sort(), 'the instance\'s processes are the cgroup\'s')
  const commandOf = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  const hashing = pids.filter((pid) => commandOf(pid).some((arg) => arg.endsWith('/hashing-process.js')))
  t.equal(hashing.length, 1, 'one hashing process')
  const hashingEnv = readFileSync(`/proc/${hashing[0] ?? 0}/environ`, 'utf8').split('\0')
  t.ok(hashingEnv.includes('UV_THREADPOOL_SIZE=1'), 'its libuv pool, where the hashes run, has one thread')
  t.equal(pids.filter((pid) => commandOf(pid).some((arg) => arg.endsWith('/server.js'))).length, 2, 'the primary and one HTTP worker')

  await servesALogin(t, server.url, 'a login, its hash included, is served under the quota')
})

t.test('a memory limit below what the workers and hashes need: one warning at start naming it, and it serves', async (t) => {
  // 700 MiB for 2 workers and 2 hashes, where operators.md recommends 768: enough to start and serve (about 480 MB measured idle).
  const cgroup = cgroupOf(t, MEMORY_HIERARCHY, [['memory.limit_in_bytes', String(700 * 1024 * 1024)]])
  const databaseUrl = await createTestDatabase(t)
  const server = await startServer(t, { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2', TESSERA_HASH_CONCURRENCY: '2', TESSERA_RATE_LIMIT: '1000000' }, { cgroup, timeoutMs: 120_000 })

  t.match(linesOf(server, /memory limit/), [{
    level: 40,
    memory_limit_bytes: 700 * 1024 * 1024,
    msg: `the memory limit, 700 MiB (cgroup v1 ${cgroup}/memory.limit_in_bytes 734003200), is below the 768 MiB recommended for 2 HTTP workers and 2 hashes at once: under load the instance may be killed for memory; raise the limit, or lower TESSERA_WORKERS and TESSERA_HASH_CONCURRENCY (docs/operators.md, "CPU and memory limits")`
  }], 'one warning, with the limit, where it was read and what to do')
  t.same(pidsIn(cgroup).sort(), [...instancePids(server.process.pid ?? 0)].sort(), 'the instance runs in the cgroup')
  await servesALogin(t, server.url, 'it serves a login under the limit')
})

t.test('no warning at the recommended size, nor without a limit', async (t) => {
  const cgroup = cgroupOf(t, MEMORY_HIERARCHY, [['memory.limit_in_bytes', String(512 * 1024 * 1024)]])
  const databaseUrl = await createTestDatabase(t)
  const env = { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '1', TESSERA_HASH_CONCURRENCY: '1' }
  const limited = await startServer(t, env, { cgroup, timeoutMs: 120_000 })
  const unlimited = await startServer(t, env)
  for (const server of [limited, unlimited]) {
    t.equal(linesOf(server, /^tessera is serving$/).length, 1, 'it started')
    t.same(linesOf(server, /memory limit/), [], 'and warned of no memory limit')
  }
})

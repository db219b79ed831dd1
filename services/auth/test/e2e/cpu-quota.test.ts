/**
 * An instance under a container's CPU quota, as Kubernetes' `limits.cpu:
 * 500m` or compose's `cpus: 0.5` set it: the real server started in a real
 * cgroup v1 with 0.5 cores counts one core (util/cpu-budget.ts), so it forks
 * one HTTP worker and its hashing process runs one hash at a time, where
 * os.availableParallelism() (libuv 1.52) counts every core of the machine.
 * Making a cgroup needs root and a cgroup v1 cpu hierarchy: CI's VM has
 * both, and elsewhere the test fails saying which is missing.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createTestDatabase } from '../helpers/db.js'
import { loginOver, signUpOver, sleep } from '../helpers/http.js'
import { instancePids, startServer } from '../helpers/server.js'

const CPU_HIERARCHY = '/sys/fs/cgroup/cpu'

const pidsIn = (cgroup: string): number[] => readFileSync(join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l !== '').map(Number)

/**
 * A cgroup v1 of `quotaUs` per `periodUs`, removed when the test ends,
 * passed or failed. A cgroup with a process in it cannot be removed: the
 * server's processes left in it (its workers and hashing process end
 * themselves after the primary, but not at once) are this test's, killed by
 * pid.
 */
function quotaCgroup (t: Test, quotaUs: number, periodUs: number): string {
  if (process.getuid?.() !== 0) throw new Error(`making a cgroup needs root; this test runs as uid ${String(process.getuid?.())} (CI runs it as root)`)
  if (!existsSync(join(CPU_HIERARCHY, 'cpu.cfs_quota_us'))) throw new Error(`no cgroup v1 cpu hierarchy at ${CPU_HIERARCHY} (this machine is cgroup v2 only?)`)
  const cgroup = join(CPU_HIERARCHY, `tessera-test-${process.pid}`)
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
  writeFileSync(join(cgroup, 'cpu.cfs_period_us'), String(periodUs))
  writeFileSync(join(cgroup, 'cpu.cfs_quota_us'), String(quotaUs))
  return cgroup
}

t.test('half a core of a cgroup v1 quota: one HTTP worker, one hash at a time, and it serves', async (t) => {
  const cgroup = quotaCgroup(t, 50_000, 100_000)
  const databaseUrl = await createTestDatabase(t)
  // Half a core for the primary, a worker and the hashing process to start on: slower than the default allows on a loaded machine
  // (about 7 s here at a load of 8). Under the file's 180 s, so that a start that never comes fails this test, whose teardown
  // empties and removes the cgroup, rather than tap's timeout, which ends the process before any teardown runs.
  const server = await startServer(t, { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_RATE_LIMIT: '1000000' }, { cgroup, timeoutMs: 120_000 })

  const serving = server.output().split('\n').filter((l) => l.includes('"msg":"tessera is serving"')).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(serving, [{
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

  await signUpOver(server.url, 'quota-user', 'correct horse battery staple')
  const tokens = await loginOver(server.url, 'quota-user', 'correct horse battery staple')
  t.type(tokens.access_token, 'string', 'a login, its hash included, is served under the quota')
})

/**
 * The memory limit an instance reads at start (util/memory-limit.ts), from
 * directory trees laid out as Linux lays out /proc and the cgroup mounts,
 * and the warning the primary logs when it is below what the workers and
 * hashes need. The real server in a real cgroup: test/e2e/container-limits.test.ts.
 */
import t from 'tap'
import { memoryLimit, memoryWarning, recommendedMemoryBytes } from '../../src/util/memory-limit.js'
import { machine } from '../helpers/proc-tree.js'

const MIB = 1024 * 1024
const V2 = { cgroup: '0::/kubepods/pod1/app\n', mounts: [{ point: 'sys/fs/cgroup', type: 'cgroup2' as const }] }

t.test('cgroup v2: the tightest memory.max from the container up to the mount; max is none', async (t) => {
  const proc = machine(t, {
    ...V2,
    files: {
      'sys/fs/cgroup/memory.max': 'max\n',
      'sys/fs/cgroup/kubepods/memory.max': `${64 * 1024 * MIB}\n`,
      'sys/fs/cgroup/kubepods/pod1/memory.max': `${768 * MIB}\n`,
      'sys/fs/cgroup/kubepods/pod1/app/memory.max': 'max\n'
    }
  })
  const limit = memoryLimit(proc)
  t.equal(limit?.bytes, 768 * MIB, 'the pod\'s limit binds its container, which has none of its own (process.constrainedMemory() reads only the container\'s)')
  t.match(limit?.from, /^cgroup v2 .*\/kubepods\/pod1\/memory\.max 805306368$/)
  t.equal(memoryLimit(machine(t, { ...V2, files: { 'sys/fs/cgroup/kubepods/pod1/app/memory.max': 'max\n' } })), undefined, 'max everywhere: no limit')
})

t.test('cgroup v1: memory.limit_in_bytes, the page counter\'s maximum is none', async (t) => {
  const v1 = (files: Record<string, string>): number | undefined => memoryLimit(machine(t, {
    cgroup: '4:memory:/process_api/abc\n1:cpu:/\n0::/\n',
    mounts: [{ point: 'sys/fs/cgroup/memory', type: 'cgroup', options: 'rw,memory' }, { point: 'sys/fs/cgroup/unified', type: 'cgroup2' }],
    files: { 'sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n', 'sys/fs/cgroup/unified/memory.max': `${100 * MIB}\n`, ...files }
  }))?.bytes
  t.equal(v1({ 'sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes': `${400 * MIB}\n` }), 400 * MIB)
  t.equal(v1({ 'sys/fs/cgroup/memory/process_api/memory.limit_in_bytes': `${300 * MIB}\n`, 'sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes': '9223372036854771712\n' }), 300 * MIB, 'a parent\'s limit binds')
  t.equal(v1({ 'sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes': '9223372036854771712\n' }), undefined, 'unlimited (this VM\'s own reading); a hybrid machine\'s unified hierarchy holds no memory controller here and is not read')
})

t.test('cgroup v1 in a container that sees only its own cgroup (Docker, Kubernetes): a parent\'s limit it cannot see, as memory.stat\'s hierarchical_memory_limit says it', async (t) => {
  const docker = (stat: string): ReturnType<typeof memoryLimit> => memoryLimit(machine(t, {
    cgroup: '4:memory:/parent.slice/docker-abc.scope\n0::/\n',
    mounts: [{ root: '/parent.slice/docker-abc.scope', point: 'sys/fs/cgroup/memory', type: 'cgroup', options: 'rw,memory' }],
    files: { 'sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n', 'sys/fs/cgroup/memory/memory.stat': stat }
  }))
  // As the kernel wrote it for a child without a limit of its own under a parent of 300 MiB (docker run --cgroup-parent).
  const limit = docker(`cache 0\nrss 0\nhierarchical_memory_limit ${300 * MIB}\nhierarchical_memsw_limit 9223372036854771712\ntotal_cache 0\n`)
  t.equal(limit?.bytes, 300 * MIB)
  t.match(limit?.from, /^cgroup v1 .*\/sys\/fs\/cgroup\/memory\/memory\.stat hierarchical_memory_limit 314572800$/)
  t.equal(docker('hierarchical_memory_limit 9223372036854771712\n'), undefined, 'unlimited all the way up')
})

t.test('what cannot be read is no limit', async (t) => {
  t.equal(memoryLimit(machine(t, {})), undefined, 'no /proc/self/cgroup')
  t.equal(memoryLimit(machine(t, { ...V2 })), undefined, 'no memory.max (the controller is not enabled)')
  t.equal(memoryLimit(machine(t, { ...V2, files: { 'sys/fs/cgroup/kubepods/pod1/app/memory.max': 'lots\n' } })), undefined, 'not a number')
  t.equal(memoryLimit(machine(t, { ...V2, files: { 'sys/fs/cgroup/kubepods/pod1/app/memory.max': '0\n' } })), undefined, 'zero')
})

t.test('the warning: below operators.md\'s table for the workers and hashes, not at or above it', async (t) => {
  t.equal(recommendedMemoryBytes(1, 1), 512 * MIB, 'one core: 512Mi, as the table says')
  t.equal(recommendedMemoryBytes(2, 2), 768 * MIB)
  t.equal(recommendedMemoryBytes(4, 4), 1280 * MIB)
  t.equal(memoryWarning(undefined, 64, 64), undefined, 'no limit, no warning')
  t.equal(memoryWarning({ bytes: 768 * MIB, from: 'x' }, 2, 2), undefined, 'exactly the recommendation')
  t.equal(memoryWarning({ bytes: 512 * MIB, from: 'cgroup v2 /sys/fs/cgroup/memory.max 536870912' }, 2, 2),
    'the memory limit, 512 MiB (cgroup v2 /sys/fs/cgroup/memory.max 536870912), is below the 768 MiB recommended for 2 HTTP workers and 2 hashes at once: under load the instance may be killed for memory; raise the limit, or lower TESSERA_WORKERS and TESSERA_HASH_CONCURRENCY (docs/operators.md, "CPU and memory limits")')
  t.match(memoryWarning({ bytes: 300 * MIB, from: 'x' }, 1, 1), /300 MiB \(x\), is below the 512 MiB recommended for 1 HTTP worker and 1 hash at once/, 'singular')
  t.equal(memoryWarning({ bytes: 512 * MIB, from: 'x' }, 1, 1), undefined, 'a 1-core pod at the table\'s 512Mi')
})

t.test('this machine\'s own /proc: a limit, if any, is a positive number of bytes', async (t) => {
  const limit = memoryLimit('/proc')
  t.ok(limit === undefined || (Number.isInteger(limit.bytes) && limit.bytes > 0), JSON.stringify(limit))
})

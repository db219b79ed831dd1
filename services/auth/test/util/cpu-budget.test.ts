/**
 * The cores an instance counts (util/cpu-budget.ts), read from directory
 * trees laid out as Linux lays out /proc and the cgroup mounts. The real
 * server under a real cgroup v1 quota: test/e2e/container-limits.test.ts.
 */
import t from 'tap'
import { cpus } from 'node:os'
import { cpuBudget } from '../../src/util/cpu-budget.js'
import { machine } from '../helpers/proc-tree.js'

const V2 = { cgroup: '0::/kubepods/pod1/app\n', mounts: [{ point: 'sys/fs/cgroup', type: 'cgroup2' as const }] }
const APP_V2 = 'sys/fs/cgroup/kubepods/pod1/app'

t.test('cgroup v2: a quota below a core is one core, a fraction is rounded up, never above the affinity', async (t) => {
  const cores = (cpuMax: string, affinity = '0-7'): number => cpuBudget({ proc: machine(t, { ...V2, affinity, files: { [`${APP_V2}/cpu.max`]: cpuMax } }), fallback: 99 }).cores
  t.equal(cores('50000 100000\n'), 1, '0.5 cores (libuv counts this as every core on v1, and floors it on v2)')
  t.equal(cores('150000 100000\n'), 2, '1.5 cores: 2 (libuv: 1)')
  t.equal(cores('200000 100000\n'), 2, 'a whole number stays')
  t.equal(cores('1000 100000\n'), 1, 'the smallest quota the kernel takes: still one core')
  t.equal(cores('max 100000\n'), 8, 'no quota: the affinity')
  t.equal(cores('1600000 100000\n', '0-3'), 4, 'a quota above the affinity: the affinity')
  t.equal(cores('50000 100000\n', '0-1,4-5,8'), 1)
  t.match(cpuBudget({ proc: machine(t, { ...V2, affinity: '0-3', files: { [`${APP_V2}/cpu.max`]: '1600000 100000\n' } }), fallback: 99 }).from,
    /^CPU affinity 4, within a CPU quota of 16 \(cgroup v2 .*\/kubepods\/pod1\/app\/cpu\.max "1600000 100000"\)$/, 'the start line says which bound')
  t.equal(cores('800000 100000\n', '0-1,4-5,8'), 5, 'an affinity list of ranges and single CPUs')
})

t.test('cgroup v2: nested quotas, the tightest ancestor binds, as the kernel enforces them', async (t) => {
  const proc = machine(t, {
    ...V2,
    files: {
      'sys/fs/cgroup/cpu.max': 'max 100000\n',
      'sys/fs/cgroup/kubepods/cpu.max': '400000 100000\n',
      'sys/fs/cgroup/kubepods/pod1/cpu.max': '150000 100000\n',
      [`${APP_V2}/cpu.max`]: 'max 100000\n'
    }
  })
  const budget = cpuBudget({ proc, fallback: 99 })
  t.equal(budget.cores, 2, 'the pod\'s 1.5 (libuv 1.52 takes the outermost quota it meets, 4)')
  t.match(budget.from, /^CPU quota 1\.5 rounded up \(cgroup v2 .*\/kubepods\/pod1\/cpu\.max "150000 100000"\), within CPU affinity 8$/)
})

t.test('cgroup v2 in a cgroup namespace: the container\'s own cgroup is the mount\'s root', async (t) => {
  const proc = machine(t, { cgroup: '0::/\n', mounts: [{ point: 'sys/fs/cgroup', type: 'cgroup2' }], files: { 'sys/fs/cgroup/cpu.max': '250000 100000\n', 'sys/fs/cpu.max': '50000 100000\n' } })
  t.equal(cpuBudget({ proc, fallback: 99 }).cores, 3, 'read up to the mount and no further')
})

t.test('cgroup v1, cpu mounted alone (this VM: 1:cpu:/t1, /sys/fs/cgroup/cpu)', async (t) => {
  const proc = machine(t, {
    cgroup: '9:name=systemd:/\n2:cpuacct:/\n1:cpu:/t1\n0::/\n',
    mounts: [{ point: 'sys/fs/cgroup/cpu', type: 'cgroup', options: 'rw,cpu' }, { point: 'sys/fs/cgroup/cpuacct', type: 'cgroup', options: 'rw,cpuacct' }, { point: 'sys/fs/cgroup/unified', type: 'cgroup2' }],
    files: {
      'sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n',
      'sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/cpu/t1/cpu.cfs_quota_us': '50000\n',
      'sys/fs/cgroup/cpu/t1/cpu.cfs_period_us': '100000\n',
      // A hybrid machine's unified hierarchy, which holds no cpu controller here, is not read.
      'sys/fs/cgroup/unified/cpu.max': '900000 100000\n'
    }
  })
  const budget = cpuBudget({ proc, fallback: 99 })
  t.equal(budget.cores, 1)
  t.match(budget.from, /^CPU quota 0\.5 rounded up \(cgroup v1 .*\/sys\/fs\/cgroup\/cpu\/t1: cpu\.cfs_quota_us 50000, cpu\.cfs_period_us 100000\), within CPU affinity 8$/)
})

t.test('cgroup v1, cpu,cpuacct as a container without a cgroup namespace sees it: its cgroup mounted as the root', async (t) => {
  const proc = machine(t, {
    cgroup: '12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n',
    mounts: [{ root: '/docker/abc', point: 'sys/fs/cgroup/cpu,cpuacct', type: 'cgroup', options: 'rw,cpu,cpuacct' }],
    files: { 'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '150000\n', 'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n' }
  })
  t.equal(cpuBudget({ proc, fallback: 99 }).cores, 2)
  // A cgroup of its own below the container's: found under the mount by the path with the mount's root taken off, not walked past.
  const nested = machine(t, {
    cgroup: '4:cpu,cpuacct:/docker/abc/app\n',
    mounts: [{ root: '/docker/abc', point: 'sys/fs/cgroup/cpu,cpuacct', type: 'cgroup', options: 'rw,cpu,cpuacct' }],
    files: {
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '400000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_quota_us': '100000\n',
      'sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_period_us': '100000\n'
    }
  })
  t.equal(cpuBudget({ proc: nested, fallback: 99 }).cores, 1, 'its own cgroup\'s 1, under the container\'s 4')
})

t.test('cgroup v1, nested: the tightest ancestor; -1 is no quota', async (t) => {
  const v1 = (files: Record<string, string>): number => cpuBudget({
    proc: machine(t, { cgroup: '4:cpu,cpuacct:/kubepods/pod1/app\n', mounts: [{ point: 'sys/fs/cgroup/cpu,cpuacct', type: 'cgroup', options: 'rw,cpuacct,cpu' }], files }),
    fallback: 99
  }).cores
  const level = (dir: string, quota: string): Record<string, string> => ({ [`sys/fs/cgroup/cpu,cpuacct/${dir}/cpu.cfs_quota_us`]: `${quota}\n`, [`sys/fs/cgroup/cpu,cpuacct/${dir}/cpu.cfs_period_us`]: '100000\n' })
  t.equal(v1({ ...level('kubepods', '-1'), ...level('kubepods/pod1', '100000'), ...level('kubepods/pod1/app', '-1') }), 1, 'the pod\'s 1 core, the container unlimited')
  t.equal(v1({ ...level('kubepods/pod1', '300000'), ...level('kubepods/pod1/app', '250000') }), 3, 'the container\'s 2.5')
  t.equal(v1({ ...level('kubepods/pod1/app', '-1') }), 8, 'no quota anywhere: the affinity')
})

t.test('what cannot be read counts as no quota; no affinity to read is the fallback', async (t) => {
  const count = (options: Parameters<typeof machine>[1]): number => cpuBudget({ proc: machine(t, options), fallback: 99 }).cores
  t.equal(count({}), 8, 'no /proc/self/cgroup, no mountinfo')
  t.equal(count({ ...V2 }), 8, 'no cpu.max (the controller is not enabled for the cgroup)')
  t.equal(count({ cgroup: V2.cgroup }), 8, 'no mountinfo')
  t.equal(count({ ...V2, files: { [`${APP_V2}/cpu.max`]: 'fifty\n' } }), 8, 'a cpu.max that is not a quota')
  t.equal(count({ ...V2, files: { [`${APP_V2}/cpu.max`]: '50000 0\n' } }), 8, 'a zero period')
  t.equal(count({ cgroup: '4:cpu,cpuacct:/a\n', mounts: [{ point: 'sys/fs/cgroup/cpu,cpuacct', type: 'cgroup', options: 'rw,cpu,cpuacct' }], files: { 'sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_quota_us': '50000\n' } }), 8, 'a v1 quota without its period')
  t.equal(count({ cgroup: '0::/../other\n', mounts: V2.mounts, files: { 'sys/fs/cgroup/cpu.max': '50000 100000\n', 'sys/other/cpu.max': '50000 100000\n' } }), 8, 'a cgroup outside the namespace\'s root is not read')
  t.equal(count({ cgroup: '4:cpu,cpuacct:/elsewhere\n', mounts: [{ root: '/docker/abc', point: 'sys/fs/cgroup/cpu,cpuacct', type: 'cgroup', options: 'rw,cpu,cpuacct' }] }), 8, 'a cgroup under no mount of its hierarchy')
  const noAffinity = cpuBudget({ proc: machine(t, { affinity: null, ...V2, files: { [`${APP_V2}/cpu.max`]: '50000 100000\n' } }), fallback: 3 })
  t.equal(noAffinity.cores, 3, 'no Cpus_allowed_list (not Linux): the fallback, and no quota read')
  t.match(noAffinity.from, /^os\.availableParallelism\(\) \(no CPU affinity in .*\/proc\/self\/status\)$/)
})

t.test('this machine\'s own /proc: a count from its affinity, at most its CPUs', async (t) => {
  const budget = cpuBudget({ proc: '/proc', fallback: 0 })
  t.ok(budget.cores >= 1 && budget.cores <= cpus().length, `${budget.cores} of ${cpus().length}`)
  t.match(budget.from, /CPU affinity \d+/)
})

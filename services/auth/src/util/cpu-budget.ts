/**
 * The cores an instance may use, which `TESSERA_WORKERS=auto` and the
 * default `TESSERA_HASH_CONCURRENCY` follow: the CPU affinity, cut by the
 * tightest cgroup CPU quota on the way to the root, rounded up. Read here
 * rather than taken from `os.availableParallelism()`, whose libuv (1.52)
 * rounds a quota down, ignores one below a core, reads no cgroup v1 quota
 * at all and, of nested cgroup v2 quotas, the outermost rather than the
 * tightest (docs/decisions.md, "Cores under a CPU quota").
 * @module
 */
import { join } from 'node:path'
import { hierarchyOf, readText, tightest, type Limit } from './cgroup.js'

export interface CpuBudget {
  cores: number
  /** What counted them, for the start line: the quota that cut the affinity and where it was read, or the affinity alone. */
  from: string
}

export interface CpuBudgetSources {
  /** Where procfs is: self/status (the affinity), self/cgroup and self/mountinfo (where this process's cgroups are) are read under it. */
  proc: string
  /** The cores when `proc` has no affinity to read (not Linux). */
  fallback: number
}

export function cpuBudget ({ proc, fallback }: CpuBudgetSources): CpuBudget {
  const affinity = affinityCount(readText(join(proc, 'self/status')))
  if (affinity === undefined) return { cores: fallback, from: `os.availableParallelism() (no CPU affinity in ${join(proc, 'self/status')})` }
  const quota = tightestQuota(proc)
  if (quota === undefined) return { cores: affinity, from: `CPU affinity ${affinity}, no CPU quota` }
  const rounded = Math.ceil(quota.value)
  if (rounded >= affinity) return { cores: affinity, from: `CPU affinity ${affinity}, within a CPU quota of ${round2(quota.value)} (${quota.source})` }
  return { cores: rounded, from: `CPU quota ${round2(quota.value)} rounded up (${quota.source}), within CPU affinity ${affinity}` }
}

/** The CPUs of `Cpus_allowed_list` in /proc/self/status, e.g. "0-3,8-11": what sched_getaffinity() counts. */
function affinityCount (status: string | undefined): number | undefined {
  const list = status?.match(/^Cpus_allowed_list:\s*(\S+)\s*$/m)?.[1]
  if (list === undefined) return undefined
  let count = 0
  for (const range of list.split(',')) {
    const [first = '', last = first] = range.split('-')
    count += Number(last) - Number(first) + 1
  }
  return Number.isInteger(count) && count > 0 ? count : undefined
}

/** The tightest CPU quota on the way to the root, as the kernel enforces nested quotas. */
function tightestQuota (proc: string): Limit | undefined {
  const hierarchy = hierarchyOf(proc, 'cpu')
  return hierarchy === undefined ? undefined : tightest(hierarchy, hierarchy.version === 1 ? v1Quota : v2Quota)
}

/** cgroup v2's cpu.max: "50000 100000" (µs of CPU per period), or "max 100000" for none. */
function v2Quota (dir: string): Limit | undefined {
  const file = join(dir, 'cpu.max')
  const text = readText(file)?.trim()
  const match = text === undefined ? null : /^(\d+) (\d+)$/.exec(text)
  return match === null ? undefined : quotaOf(Number(match[1]), Number(match[2]), `cgroup v2 ${file} "${text ?? ''}"`)
}

/** cgroup v1's cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us. */
function v1Quota (dir: string): Limit | undefined {
  const quota = readText(join(dir, 'cpu.cfs_quota_us'))?.trim() ?? ''
  const period = readText(join(dir, 'cpu.cfs_period_us'))?.trim() ?? ''
  if (!/^\d+$/.test(quota) || !/^\d+$/.test(period)) return undefined
  return quotaOf(Number(quota), Number(period), `cgroup v1 ${dir}: cpu.cfs_quota_us ${quota}, cpu.cfs_period_us ${period}`)
}

/** Cores per period, a fraction: 0.5 for "50000 100000". */
function quotaOf (quota: number, period: number, source: string): Limit | undefined {
  return quota > 0 && period > 0 ? { value: quota / period, source } : undefined
}

const round2 = (n: number): number => Math.round(n * 100) / 100

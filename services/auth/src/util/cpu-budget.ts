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
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'

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

interface Quota {
  /** Cores per period, a fraction: 0.5 for "50000 100000". */
  cores: number
  /** The file and what it said, for `from`. */
  source: string
}

export function cpuBudget ({ proc, fallback }: CpuBudgetSources): CpuBudget {
  const affinity = affinityCount(readText(join(proc, 'self/status')))
  if (affinity === undefined) return { cores: fallback, from: `os.availableParallelism() (no CPU affinity in ${join(proc, 'self/status')})` }
  const quota = tightestQuota(proc)
  if (quota === undefined) return { cores: affinity, from: `CPU affinity ${affinity}, no CPU quota` }
  const rounded = Math.ceil(quota.cores)
  if (rounded >= affinity) return { cores: affinity, from: `CPU affinity ${affinity}, within a CPU quota of ${round2(quota.cores)} (${quota.source})` }
  return { cores: rounded, from: `CPU quota ${round2(quota.cores)} rounded up (${quota.source}), within CPU affinity ${affinity}` }
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

/**
 * The smallest quota from this process's cgroup up to the root of what is
 * mounted, as the kernel enforces nested quotas. cgroup v1 when a v1
 * hierarchy has the cpu controller (alone, `cpu`, or with others,
 * `cpu,cpuacct`), else cgroup v2's cpu.max.
 */
function tightestQuota (proc: string): Quota | undefined {
  const memberships = (readText(join(proc, 'self/cgroup')) ?? '').split('\n').flatMap((line) => {
    const match = /^\d+:([^:]*):(.*)$/.exec(line)
    return match === null ? [] : [{ controllers: match[1] === '' ? [] : (match[1] ?? '').split(','), path: match[2] ?? '' }]
  })
  const mounts = parseMountinfo(readText(join(proc, 'self/mountinfo')) ?? '')
  const v1 = memberships.find((m) => m.controllers.includes('cpu'))
  if (v1 !== undefined) {
    const dir = cgroupDir(v1.path, mounts.filter((m) => m.type === 'cgroup' && m.options.includes('cpu')))
    return dir === undefined ? undefined : tightest(dir, v1Quota)
  }
  const v2 = memberships.find((m) => m.controllers.length === 0)
  if (v2 === undefined) return undefined
  const dir = cgroupDir(v2.path, mounts.filter((m) => m.type === 'cgroup2'))
  return dir === undefined ? undefined : tightest(dir, v2Quota)
}

interface Mount { root: string, point: string, type: string, options: string[] }

/** /proc/self/mountinfo (proc(5)): the mount's root within its filesystem, where it is mounted, its type and its super options (a v1 hierarchy's controllers). */
function parseMountinfo (text: string): Mount[] {
  return text.split('\n').flatMap((line) => {
    const fields = line.split(' ')
    const separator = fields.indexOf('-', 6)
    if (separator < 0) return []
    return [{ root: unescapeOctal(fields[3] ?? ''), point: unescapeOctal(fields[4] ?? ''), type: fields[separator + 1] ?? '', options: (fields[separator + 3] ?? '').split(',') }]
  })
}

/** mountinfo writes a space, tab, newline or backslash in a path as \040, \011, \012, \134. */
function unescapeOctal (field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, code: string) => String.fromCharCode(parseInt(code, 8)))
}

/**
 * The directory of `path` (from /proc/self/cgroup) under a mount of its
 * hierarchy. A container without a cgroup namespace (cgroup v1, Docker,
 * Kubernetes) sees its own cgroup mounted as the mount's root: the path
 * names it from the host's root, so the mount's root is taken off. The
 * mount whose root is the longest prefix of the path wins.
 */
function cgroupDir (path: string, mounts: Mount[]): { dir: string, top: string } | undefined {
  let best: { dir: string, top: string, rootLength: number } | undefined
  for (const mount of mounts) {
    const root = mount.root === '/' ? '' : mount.root
    if (path !== root && !path.startsWith(`${root}/`)) continue
    const relative = path.slice(root.length)
    // A path outside the namespace's root ("/../x") leaves the mount: not ours to read.
    if (relative.split('/').includes('..')) continue
    if (best === undefined || root.length > best.rootLength) best = { dir: resolve(mount.point, `.${relative}`), top: resolve(mount.point), rootLength: root.length }
  }
  return best
}

/** The smallest of `read`'s quotas from `dir` up to `top`, the mount's root, itself included. */
function tightest ({ dir, top }: { dir: string, top: string }, read: (dir: string) => Quota | undefined): Quota | undefined {
  let smallest: Quota | undefined
  for (let at = dir; ; at = dirname(at)) {
    const quota = read(at)
    if (quota !== undefined && (smallest === undefined || quota.cores < smallest.cores)) smallest = quota
    if (at === top || at === dirname(at)) return smallest
  }
}

/** cgroup v2's cpu.max: "50000 100000" (µs of CPU per period), or "max 100000" for none. */
function v2Quota (dir: string): Quota | undefined {
  const file = join(dir, 'cpu.max')
  const text = readText(file)?.trim()
  const match = text === undefined ? null : /^(\d+) (\d+)$/.exec(text)
  return match === null ? undefined : quotaOf(Number(match[1]), Number(match[2]), `cgroup v2 ${file} "${text ?? ''}"`)
}

/** cgroup v1's cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us. */
function v1Quota (dir: string): Quota | undefined {
  const quota = readText(join(dir, 'cpu.cfs_quota_us'))?.trim() ?? ''
  const period = readText(join(dir, 'cpu.cfs_period_us'))?.trim() ?? ''
  if (!/^\d+$/.test(quota) || !/^\d+$/.test(period)) return undefined
  return quotaOf(Number(quota), Number(period), `cgroup v1 ${dir}: cpu.cfs_quota_us ${quota}, cpu.cfs_period_us ${period}`)
}

function quotaOf (quota: number, period: number, source: string): Quota | undefined {
  return quota > 0 && period > 0 ? { cores: quota / period, source } : undefined
}

/** A file's text, or undefined when it cannot be read (absent, not a cgroup file here, no permission). */
function readText (file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

const round2 = (n: number): number => Math.round(n * 100) / 100

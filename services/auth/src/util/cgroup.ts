/**
 * Where this process's cgroup of one controller is, and the tightest of a
 * limit from it up to the root of what is mounted, as the kernel enforces
 * nested limits: what util/cpu-budget.ts (the CPU quota) and
 * util/memory-limit.ts (the memory limit) read. Only procfs and the cgroup
 * mounts are read; anything that cannot be read is no limit, never an error
 * (a start is not refused over it).
 * @module
 */
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'

/** A limit read in one cgroup directory, with what it said, for the start line. */
export interface Limit {
  value: number
  source: string
}

/** One controller's hierarchy for this process: its cgroup's directory, the mount's root above it, and the cgroup version. */
export interface Hierarchy {
  dir: string
  top: string
  version: 1 | 2
}

/**
 * This process's cgroup of `controller`: cgroup v1 when a v1 hierarchy has
 * it (alone, `cpu`, or with others, `cpu,cpuacct`), else cgroup v2's.
 */
export function hierarchyOf (proc: string, controller: string): Hierarchy | undefined {
  const memberships = (readText(join(proc, 'self/cgroup')) ?? '').split('\n').flatMap((line) => {
    const match = /^\d+:([^:]*):(.*)$/.exec(line)
    return match === null ? [] : [{ controllers: match[1] === '' ? [] : (match[1] ?? '').split(','), path: match[2] ?? '' }]
  })
  const mounts = parseMountinfo(readText(join(proc, 'self/mountinfo')) ?? '')
  const v1 = memberships.find((m) => m.controllers.includes(controller))
  if (v1 !== undefined) {
    const found = cgroupDir(v1.path, mounts.filter((m) => m.type === 'cgroup' && m.options.includes(controller)))
    return found === undefined ? undefined : { ...found, version: 1 }
  }
  const v2 = memberships.find((m) => m.controllers.length === 0)
  if (v2 === undefined) return undefined
  const found = cgroupDir(v2.path, mounts.filter((m) => m.type === 'cgroup2'))
  return found === undefined ? undefined : { ...found, version: 2 }
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
  return best === undefined ? undefined : { dir: best.dir, top: best.top }
}

/** The smallest of `read`'s limits from the hierarchy's cgroup up to the mount's root, both included. */
export function tightest ({ dir, top }: Hierarchy, read: (dir: string) => Limit | undefined): Limit | undefined {
  let smallest: Limit | undefined
  for (let at = dir; ; at = dirname(at)) {
    const limit = read(at)
    if (limit !== undefined && (smallest === undefined || limit.value < smallest.value)) smallest = limit
    if (at === top || at === dirname(at)) return smallest
  }
}

/** A file's text, or undefined when it cannot be read (absent, not a cgroup file here, no permission). */
export function readText (file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

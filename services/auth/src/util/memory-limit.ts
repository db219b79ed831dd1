/**
 * The memory limit an instance runs under, and the memory it needs for its
 * workers and hashes: the primary warns at start when the one is below the
 * other, since what follows is an OOM kill under load, not a refusal
 * (docs/operators.md, "CPU and memory limits"). Read here rather than from
 * `process.constrainedMemory()`, which reads the process's own memory
 * cgroup only, not its parents' (a Kubernetes pod's limit is on the pod's
 * cgroup as well as the container's).
 * @module
 */
import { join } from 'node:path'
import { hierarchyOf, readText, tightest, type Limit } from './cgroup.js'

const MIB = 1024 * 1024

export interface MemoryLimit {
  bytes: number
  /** The file and what it said. */
  from: string
}

/**
 * At and above this a v1 limit is no limit: "unlimited" reads as the page
 * counter's maximum (9223372036854771712 with 4 KiB pages), not a round number.
 */
const V1_UNLIMITED = 2 ** 60

/**
 * The tightest memory limit from this process's cgroup up to the root of
 * what is mounted, if any; under cgroup v1 also of the parents it cannot see.
 */
export function memoryLimit (proc: string): MemoryLimit | undefined {
  const hierarchy = hierarchyOf(proc, 'memory')
  if (hierarchy === undefined) return undefined
  const seen = tightest(hierarchy, hierarchy.version === 1 ? v1Limit : v2Limit)
  const unseen = hierarchy.version === 1 ? v1HierarchicalLimit(hierarchy.dir) : undefined
  const limit = unseen !== undefined && (seen === undefined || unseen.value < seen.value) ? unseen : seen
  return limit === undefined ? undefined : { bytes: limit.value, from: limit.source }
}

/** cgroup v2's memory.max: bytes, or "max" for none. */
function v2Limit (dir: string): Limit | undefined {
  const file = join(dir, 'memory.max')
  const text = readText(file)?.trim() ?? ''
  return /^\d+$/.test(text) && Number(text) > 0 ? { value: Number(text), source: `cgroup v2 ${file} ${text}` } : undefined
}

/** cgroup v1's memory.limit_in_bytes. */
function v1Limit (dir: string): Limit | undefined {
  const file = join(dir, 'memory.limit_in_bytes')
  const text = readText(file)?.trim() ?? ''
  return /^\d+$/.test(text) && Number(text) > 0 && Number(text) < V1_UNLIMITED ? { value: Number(text), source: `cgroup v1 ${file} ${text}` } : undefined
}

/**
 * cgroup v1's memory.stat hierarchical_memory_limit: the tightest limit of
 * the cgroup and every parent, as the kernel counts it. A container that
 * sees only its own cgroup (Docker, Kubernetes, without a cgroup namespace)
 * has it mounted as the root, so a parent's limit (`docker run
 * --cgroup-parent`, a systemd slice's) is read nowhere else.
 */
function v1HierarchicalLimit (dir: string): Limit | undefined {
  const file = join(dir, 'memory.stat')
  const text = readText(file)?.match(/^hierarchical_memory_limit (\d+)$/m)?.[1]
  return text !== undefined && Number(text) > 0 && Number(text) < V1_UNLIMITED ? { value: Number(text), source: `cgroup v1 ${file} hierarchical_memory_limit ${text}` } : undefined
}

/**
 * What operators.md's table gives an instance: 256 MiB, 192 MiB per HTTP
 * worker and 64 MiB per hash at once, 256 MiB + 256 MiB per core at the
 * defaults. About twice what was measured idle (the primary 95 MB, a worker
 * 115 MB, the hashing process 57 MB + 20 MB per hash): a worker's heap
 * grows under load.
 */
export function recommendedMemoryBytes (workers: number, hashConcurrency: number): number {
  return (256 + 192 * workers + 64 * hashConcurrency) * MIB
}

/** The start's warning when the limit is below what the instance's settings need, or undefined. */
export function memoryWarning (limit: MemoryLimit | undefined, workers: number, hashConcurrency: number): string | undefined {
  if (limit === undefined) return undefined
  const recommended = recommendedMemoryBytes(workers, hashConcurrency)
  if (limit.bytes >= recommended) return undefined
  return `the memory limit, ${Math.floor(limit.bytes / MIB)} MiB (${limit.from}), is below the ${recommended / MIB} MiB recommended for ${workers} HTTP worker${workers === 1 ? '' : 's'} and ${hashConcurrency} hash${hashConcurrency === 1 ? '' : 'es'} at once: under load the instance may be killed for memory; raise the limit, or lower TESSERA_WORKERS and TESSERA_HASH_CONCURRENCY (docs/operators.md, "CPU and memory limits")`
}

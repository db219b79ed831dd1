/**
 * A machine's /proc/self and cgroup mounts, laid out under a fresh directory
 * as Linux lays them out, for the modules that read them (util/cgroup.ts
 * and its callers) to be tested against any layout.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import type { Test } from 'tap'

export interface Mount { root?: string, point: string, type: 'cgroup' | 'cgroup2', options?: string }

/**
 * A machine's /proc/self and cgroup mounts under a fresh directory (with a
 * space in its name, which mountinfo writes as \040), returning its proc.
 * `files` are written under the directory; mount points are relative to it.
 */
export function machine (t: Test, { affinity = '0-7', cgroup, mounts, files = {} }: { affinity?: string | null, cgroup?: string, mounts?: Mount[], files?: Record<string, string> }): string {
  const base = mkdtempSync(join(tmpdir(), 'tessera proc-tree-'))
  t.teardown(() => rmSync(base, { recursive: true, force: true }))
  const write = (path: string, text: string): void => {
    mkdirSync(dirname(join(base, path)), { recursive: true })
    writeFileSync(join(base, path), text)
  }
  write('proc/self/status', `Name:\tnode\n${affinity === null ? '' : `Cpus_allowed_list:\t${affinity}\n`}Mems_allowed_list:\t0\n`)
  if (cgroup !== undefined) write('proc/self/cgroup', cgroup)
  if (mounts !== undefined) {
    write('proc/self/mountinfo', [
      `22 1 0:21 / ${base.replaceAll(' ', '\\040')}/proc rw,nosuid - proc proc rw`,
      ...mounts.map((m, i) => `${30 + i} 22 0:${30 + i} ${m.root ?? '/'} ${join(base, m.point).replaceAll(' ', '\\040')} rw,nosuid,nodev,noexec,relatime shared:9 - ${m.type} cgroup ${m.options ?? 'rw'}`)
    ].join('\n') + '\n')
  }
  for (const [path, text] of Object.entries(files)) write(path, text)
  return join(base, 'proc')
}

/**
 * Whether a directory is root's alone, for the embedded Postgres's shared
 * directory in /var/tmp (db/embedded.ts), which root's starts trust with
 * the binaries they run and the records they write.
 * @module
 */
import fs from 'node:fs/promises'

/**
 * What makes `dir` unfit to be a directory of root's alone, if anything: not
 * a directory (a link, even to one of root's, or a file), another user's, or
 * one group or others may write. Absent is fine: whoever makes it asks again.
 */
export async function notRootsAlone (dir: string): Promise<string | undefined> {
  const stat = await fs.lstat(dir).catch((err: { code?: string }) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (stat === undefined) return undefined
  if (!stat.isDirectory()) return `${dir} is not a directory`
  if (stat.uid !== 0) return `${dir} belongs to uid ${stat.uid}, not to root`
  if ((stat.mode & 0o022) !== 0) return `${dir} may be written by others than root (mode ${(stat.mode & 0o777).toString(8)})`
  return undefined
}

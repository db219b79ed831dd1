/**
 * makeDataDir: the local state directory (TESSERA_DATA_DIR), made when
 * missing, before the embedded Postgres or a generated KEK is put in it.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { constants, promises as fs } from 'node:fs'

/**
 * Makes `dataDir` (traversable but not listable, so that as root the
 * postgres user can reach its cluster inside) and checks it can be written.
 * A path that cannot be used (under a file, read-only, not ours) fails in
 * one line naming the setting: the bare `ENOTDIR: not a directory, mkdir`
 * left the operator to guess which setting named that path.
 */
export async function makeDataDir (dataDir: string): Promise<void> {
  try {
    await fs.mkdir(dataDir, { recursive: true, mode: 0o711 })
    await fs.access(dataDir, constants.W_OK | constants.X_OK)
  } catch (err) {
    throw new Error(`TESSERA_DATA_DIR=${JSON.stringify(dataDir)} cannot be used as the local state directory (${(err as Error).message})`)
  }
}

/**
 * Writes `content` to `file` (mode 0600) only if there is no such file, whole
 * or not at all: written beside it first, then linked into place, which
 * (unlike a rename) refuses to replace a file already there. Two starts at
 * once on a new data directory each made the file with `wx` and read it
 * back: the one that lost the race could read the winner's file between its
 * creation and its write, empty, and go on with an empty secret (seen: the
 * embedded Postgres refusing a login "SASL: client password must be a
 * string"). True when this call made it; false when the file was already
 * there (or could not be made: reading it says why).
 */
export async function createWholeOnce (file: string, content: string): Promise<boolean> {
  const beside = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    await fs.writeFile(beside, content, { mode: 0o600, flag: 'wx' })
    await fs.link(beside, file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    // A file system without hard links (some network and bind mounts): the exclusive create alone, as before.
    return await fs.writeFile(file, content, { mode: 0o600, flag: 'wx' }).then(() => true, () => false)
  } finally {
    await fs.rm(beside, { force: true })
  }
}

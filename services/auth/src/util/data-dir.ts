/**
 * makeDataDir: the local state directory (TESSERA_DATA_DIR), made when
 * missing, before the embedded Postgres or a generated KEK is put in it.
 * @module
 */
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

/**
 * The local KEK file (no TESSERA_KEK or TESSERA_KEK_FILE): `<dataDir>/kek`,
 * and the new KEK `keys rewrap` stages beside it as `kek.<pid>` before its
 * commit and renames over it after. A rewrap killed between the two leaves
 * the keys sealed under the staged file while `kek` still holds the old KEK;
 * `finishInterruptedRewrap` does the rename it did not get to.
 * @module
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'
import type { Db } from '../db/database.js'
import { decryptPrivateKey, localKekFile, readKekFile, WrongKekError } from './kek.js'

/** Where the process `pid` stages a new KEK beside the local one. */
export const stagedKekFile = (dataDir: string, pid: number): string => `${localKekFile(dataDir)}.${pid}`

const STAGED_NAME = /^kek\.\d+$/

/** Whether `kek` opens every one of `sealed`. */
function opensAll (kek: Buffer, sealed: ReadonlyArray<{ kid: string, private_key_enc: Buffer }>): boolean {
  try {
    for (const { kid, private_key_enc: enc } of sealed) decryptPrivateKey(kek, kid, enc).fill(0)
    return true
  } catch (err) {
    if (err instanceof WrongKekError) return false
    throw err
  }
}

/** The KEKs staged beside the local one, by file; a file that holds no KEK is no candidate. */
async function stagedKeks (dataDir: string): Promise<Array<{ file: string, kek: Buffer }>> {
  const staged: Array<{ file: string, kek: Buffer }> = []
  for (const name of (await fs.readdir(dataDir)).filter((n) => STAGED_NAME.test(n)).sort()) {
    const file = path.join(dataDir, name)
    const kek = await readKekFile(file).catch(() => undefined)
    if (kek !== undefined) staged.push({ file, kek })
  }
  return staged
}

/** What the operator is told of a finished rewrap, by the command or the start that finished it. */
export const finishedRewrap = ({ staged, file }: { staged: string, file: string }): string =>
  `${file} did not open the signing keys and ${staged} did: a \`tessera keys rewrap\` stopped after its commit, before renaming the one over the other; renamed it now`

export interface LocalKek {
  kek: Buffer
  /** Set when an interrupted rewrap was finished: the staged file renamed over the local one. */
  finished?: { staged: string, file: string }
}

/**
 * The local KEK `kek` (read from `<dataDir>/kek`), or, when it does not open
 * every stored private half and a KEK staged beside it does, that one, its
 * file renamed over `kek` first. Rewrap's transaction seals every key under
 * the new KEK or none, so a staged KEK that opens them all is the one the
 * interrupted rewrap committed, and the rename is the step it had left; the
 * old KEK opens nothing any more. Anything else (no staged file opens them)
 * is left as it is, for the caller's "cannot decrypt" error. Only for the
 * local file: a KEK given in TESSERA_KEK or TESSERA_KEK_FILE is the operator's,
 * and no file is touched for it.
 */
export async function finishInterruptedRewrap (db: Db, dataDir: string, kek: Buffer): Promise<LocalKek> {
  const rows = await db.selectFrom('signing_keys').select(['kid', 'private_key_enc']).where('private_key_enc', 'is not', null).execute()
  const sealed = rows.flatMap(({ kid, private_key_enc: enc }) => enc === null ? [] : [{ kid, private_key_enc: enc }])
  if (opensAll(kek, sealed)) return { kek }
  const staged = (await stagedKeks(dataDir)).find((candidate) => opensAll(candidate.kek, sealed))
  if (staged === undefined) return { kek }
  const file = localKekFile(dataDir)
  try {
    await fs.rename(staged.file, file)
  } catch (err) {
    // Another process (the rewrap itself, a second instance) renamed it first: nothing was done here.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (await readKekFile(file)).equals(staged.kek)) return { kek: staged.kek }
    throw err
  }
  return { kek: staged.kek, finished: { staged: staged.file, file } }
}

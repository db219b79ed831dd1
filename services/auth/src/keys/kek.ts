/**
 * Private halves at rest: AES-256-GCM under the key-encryption key, a random
 * 96-bit nonce per key, and the kid as associated data so a ciphertext cannot
 * be moved to another row. Stored as nonce ‖ ciphertext ‖ tag.
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { ConfigError, type Config } from '../config.js'
import { TesseraError } from '../errors.js'
import { createWholeOnce, makeDataDir } from '../util/data-dir.js'

const NONCE = 12
const TAG = 16

export function encryptPrivateKey (kek: Buffer, kid: string, pkcs8: Buffer): Buffer {
  const nonce = randomBytes(NONCE)
  const cipher = createCipheriv('aes-256-gcm', kek, nonce)
  cipher.setAAD(Buffer.from(kid, 'utf8'))
  return Buffer.concat([nonce, cipher.update(pkcs8), cipher.final(), cipher.getAuthTag()])
}

export class WrongKekError extends TesseraError {
  readonly kid: string
  readonly code = 'ERR_WRONG_KEK'

  constructor (kid: string) {
    super(`cannot decrypt the private half of signing key ${kid}: this KEK (TESSERA_KEK or TESSERA_KEK_FILE; with neither set, the file kek in TESSERA_DATA_DIR, made if it was missing) is not the key it was encrypted with`)
    this.kid = kid
  }
}

export function decryptPrivateKey (kek: Buffer, kid: string, sealed: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', kek, sealed.subarray(0, NONCE))
  decipher.setAAD(Buffer.from(kid, 'utf8'))
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG))
  try {
    return Buffer.concat([decipher.update(sealed.subarray(NONCE, sealed.length - TAG)), decipher.final()])
  } catch (cause) {
    throw new WrongKekError(kid)
  }
}

/** Reads a KEK file: base64url of 32 bytes, whitespace ignored. */
export async function readKekFile (file: string): Promise<Buffer> {
  const text = (await fs.readFile(file, 'utf8')).trim()
  const kek = /^[A-Za-z0-9_-]{43}$/.test(text) ? Buffer.from(text, 'base64url') : Buffer.alloc(0)
  if (kek.length !== 32) throw new Error(`${file} does not hold base64url of 32 bytes`)
  return kek
}

/** `<dataDir>/kek`, the local KEK file (no TESSERA_KEK or TESSERA_KEK_FILE). */
export const localKekFile = (dataDir: string): string => path.join(dataDir, 'kek')

/**
 * The KEK for this process: the configured one, or for local use a generated
 * one kept in `<dataDir>/kek` with mode 0600 (never in production). Asked
 * for only by what touches private halves, so `tessera migrate` runs without it.
 */
export async function resolveKek (config: Pick<Config, 'kek' | 'dataDir' | 'production'>): Promise<Buffer> {
  if (config.kek !== undefined) return config.kek
  if (config.production) {
    throw new ConfigError('TESSERA_KEK', '', '', 'TESSERA_KEK (or TESSERA_KEK_FILE) is required when NODE_ENV=production')
  }
  const dataDir = config.dataDir
  const file = localKekFile(dataDir)
  // Made, and the directory checked for writing, only when there is none yet:
  // a KEK already there is read from a directory that may take no writes (a
  // read-only mount, chattr +i), as `keys rewrap` refusing such a directory says in its own words.
  if (!await fs.access(file).then(() => true, () => false)) {
    await makeDataDir(dataDir)
    await createWholeOnce(file, `${randomBytes(32).toString('base64url')}\n`)
  }
  return readKekFile(file)
}

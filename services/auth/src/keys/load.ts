/**
 * Reads signing_keys into the keyring, decrypting the private halves that are
 * still stored. A key already in memory is reused so a reload does not
 * re-import or re-decrypt it.
 * @module
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import type { Db } from '../db/database.js'
import { decryptPrivateKey, WrongKekError } from './kek.js'
import type { Keyring, LoadedKey } from './keyring.js'

export interface LoadOptions {
  /**
   * Set on reloads in a running instance: a key sealed under another KEK (the
   * KEK was rewrapped and this instance awaits its restart) is loaded without
   * its private half instead of failing the whole reload. At start the error
   * stands, so a wrong KEK stops the process.
   */
  onWrongKek?: (err: WrongKekError) => void
}

function openPrivateKey (kek: Buffer, kid: string, sealed: Buffer, options: LoadOptions): KeyObject | undefined {
  try {
    return createPrivateKey({ key: decryptPrivateKey(kek, kid, sealed), format: 'der', type: 'pkcs8' })
  } catch (err) {
    if (!(err instanceof WrongKekError) || options.onWrongKek === undefined) throw err
    options.onWrongKek(err)
    return undefined
  }
}

export async function loadKeyring (db: Db, kek: Buffer, keyring: Keyring, options: LoadOptions = {}): Promise<void> {
  const rows = await db.selectFrom('signing_keys')
    .select(['kid', 'state', 'public_jwk', 'private_key_enc', 'promoted_at'])
    .where('state', '<>', 'revoked')
    .execute()
  const keys = rows.map((row): LoadedKey => {
    const known = keyring.get(row.kid)
    const publicKey = known?.publicKey ?? createPublicKey({ key: { ...row.public_jwk }, format: 'jwk' })
    const privateKey = row.private_key_enc === null
      ? undefined
      : known?.privateKey ?? openPrivateKey(kek, row.kid, row.private_key_enc, options)
    return {
      kid: row.kid,
      state: row.state,
      jwk: row.public_jwk,
      publicKey,
      publicPem: known?.publicPem ?? publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      privateKey,
      promotedAt: row.promoted_at
    }
  })
  keyring.replace(keys)
}

/**
 * Wraps a reload so that callers arriving while one runs share it and one more
 * run follows: many notifications in a burst cost at most two reads.
 */
export function singleFlight (run: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined
  let again = false
  return async () => {
    if (running !== undefined) {
      again = true
      return await running
    }
    running = (async () => {
      try {
        do {
          again = false
          await run()
        } while (again)
      } finally {
        running = undefined
      }
    })()
    return await running
  }
}

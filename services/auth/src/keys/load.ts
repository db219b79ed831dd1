/**
 * Reads signing_keys into the keyring, decrypting the private halves that are
 * still stored. A key already in memory is reused so a reload does not
 * re-import or re-decrypt it.
 * @module
 */
import { createPrivateKey, createPublicKey } from 'node:crypto'
import type { Db } from '../db/database.js'
import { decryptPrivateKey } from './kek.js'
import type { Keyring, LoadedKey } from './keyring.js'

export async function loadKeyring (db: Db, kek: Buffer, keyring: Keyring): Promise<void> {
  const rows = await db.selectFrom('signing_keys')
    .select(['kid', 'state', 'public_jwk', 'private_key_enc'])
    .where('state', '<>', 'revoked')
    .execute()
  const keys = rows.map((row): LoadedKey => {
    const known = keyring.get(row.kid)
    const publicKey = known?.publicKey ?? createPublicKey({ key: { ...row.public_jwk }, format: 'jwk' })
    const privateKey = row.private_key_enc === null
      ? undefined
      : known?.privateKey ?? createPrivateKey({ key: decryptPrivateKey(kek, row.kid, row.private_key_enc), format: 'der', type: 'pkcs8' })
    return {
      kid: row.kid,
      state: row.state,
      jwk: row.public_jwk,
      publicKey,
      publicPem: known?.publicPem ?? publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      privateKey
    }
  })
  keyring.replace(keys)
}

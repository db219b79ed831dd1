/**
 * KEK rotation: re-encrypts every stored private half under a new KEK in one
 * transaction, so the table is never half old, half new. Running instances
 * keep their decrypted keys in memory; each must restart with the new
 * TESSERA_KEK (docs/operators.md, "Rotating the KEK").
 * @module
 */
import type { Db } from '../db/database.js'
import { recordAudit } from '../audit/record.js'
import { lockKeys } from './ensure.js'
import { decryptPrivateKey, encryptPrivateKey } from './kek.js'
import type { Actor } from './transitions.js'
import { TesseraError } from '../errors.js'

export class SameKekError extends TesseraError {
  readonly code = 'ERR_SAME_KEK'

  constructor () {
    super('the new KEK is the one already in use')
  }
}

/** Returns the kids re-encrypted. Throws WrongKekError (nothing changed) when `oldKek` does not open a stored key. */
export async function rewrapKeys (db: Db, oldKek: Buffer, newKek: Buffer, who: Actor): Promise<string[]> {
  if (oldKek.equals(newKek)) throw new SameKekError()
  return await db.transaction().execute(async (trx) => {
    await lockKeys(trx)
    const sealed = await trx.selectFrom('signing_keys').select(['kid', 'private_key_enc'])
      .where('private_key_enc', 'is not', null).forUpdate().execute()
    for (const { kid, private_key_enc: enc } of sealed) {
      if (enc === null) continue
      const pkcs8 = decryptPrivateKey(oldKek, kid, enc)
      await trx.updateTable('signing_keys').set({ private_key_enc: encryptPrivateKey(newKek, kid, pkcs8) }).where('kid', '=', kid).execute()
      pkcs8.fill(0)
    }
    await recordAudit(trx, sealed.map(({ kid }) => ({ type: 'key.rewrapped' as const, ...who, kid })))
    return sealed.map(({ kid }) => kid)
  })
}

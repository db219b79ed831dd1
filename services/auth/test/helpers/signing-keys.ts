/**
 * The first signing key of an in-process app, from keys made once per test
 * run: scripts/with-test-db.mjs generates them (real RSA keys, made at test
 * time, never committed) into the file TESSERA_TEST_SIGNING_KEYS names.
 * Generating a 2048-bit key costs 40–150 ms of CPU, and the fast lane built
 * ~85 apps (docs/decisions.md, "The fast lane in half a minute").
 *
 * Each key is handed out once per test process, so no two apps of a test file
 * share a key (a kid is the key's thumbprint). Past the last key, and for a
 * size the run did not make, the app generates its own as before. Tests about
 * making keys call ensureSigningKey, rotateKeys and advanceKeys themselves,
 * which always generate.
 */
import { readFileSync } from 'node:fs'
import type { Db, PublicJwk } from '../../src/db/database.js'
import { lockKeys } from '../../src/keys/ensure.js'
import { storeKey } from '../../src/keys/transitions.js'

interface MadeAhead { kid: string, bits: number, publicJwk: PublicJwk, pkcs8: string }

let unused: MadeAhead[] | undefined

function takeKey (bits: number): MadeAhead | undefined {
  const file = process.env.TESSERA_TEST_SIGNING_KEYS
  unused ??= file === undefined ? [] : JSON.parse(readFileSync(file, 'utf8')) as MadeAhead[]
  const at = unused.findIndex((key) => key.bits === bits)
  return at < 0 ? undefined : unused.splice(at, 1)[0]
}

/**
 * When the database has no signing key and no pending one (a first boot),
 * stores a key made ahead as `next`, the way a key operation stores one it
 * generated, so that ensureSigningKey promotes it instead of generating one.
 * Returns its kid, or undefined when nothing was stored.
 */
export async function storeKeyMadeAhead (db: Db, kek: Buffer, bits: number, now: Date): Promise<string | undefined> {
  return await db.transaction().execute(async (trx) => {
    await lockKeys(trx)
    const live = await trx.selectFrom('signing_keys').select('kid').where('state', 'in', ['current', 'next']).executeTakeFirst()
    if (live !== undefined) return undefined
    const key = takeKey(bits)
    if (key === undefined) return undefined
    await storeKey(trx, { ...key, pkcs8: Buffer.from(key.pkcs8, 'base64url') }, kek, now, { actor: 'system' })
    return key.kid
  })
}

/**
 * Reads signing_keys into the keyring, decrypting the private halves that are
 * still stored. A key already in memory is reused so a reload does not
 * re-import or re-decrypt it.
 * @module
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import { calculateJwkThumbprint } from 'jose'
import type { Db, PublicJwk, SigningKeyRow } from '../db/database.js'
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
  /** Told of every row left out by rowDefect; the caller logs it at error level. */
  onRejectedKey: (kid: string, reason: string) => void
}

type KeyRow = Pick<SigningKeyRow, 'kid' | 'state' | 'public_jwk' | 'private_key_enc' | 'unpublished_at' | 'published_at' | 'promoted_at'>

/**
 * Why a row must not be trusted, or undefined. Every verifier trusts what the
 * JWKS publishes, so a row someone wrote by hand (a kid that is not its key's
 * RFC 7638 thumbprint, a public key under another kid, a published state that
 * contradicts the row) is left out rather than published. `keys list` marks
 * such a row by the same test.
 */
export async function rowDefect (row: Pick<KeyRow, 'kid' | 'state' | 'public_jwk' | 'private_key_enc' | 'unpublished_at'>): Promise<string | undefined> {
  const jwk = row.public_jwk
  if (jwk.kty !== 'RSA' || jwk.alg !== 'RS256' || typeof jwk.n !== 'string' || typeof jwk.e !== 'string') return 'public_jwk is not an RS256 RSA key'
  if (jwk.kid !== row.kid) return 'public_jwk.kid differs from the row kid'
  if (await calculateJwkThumbprint({ kty: 'RSA', n: jwk.n, e: jwk.e }, 'sha256') !== row.kid) return 'kid is not the RFC 7638 thumbprint of its public key'
  if (row.unpublished_at !== null && PUBLISHED_STATES.has(row.state)) return `state ${row.state} but unpublished_at is set`
  if (row.private_key_enc === null && (row.state === 'next' || row.state === 'current')) return `state ${row.state} without a private key`
  return undefined
}

const PUBLISHED_STATES = new Set(['next', 'current', 'previous'])

interface ErrorLogger { error: (details: object, message: string) => void }

/** The onRejectedKey every running instance uses. */
export function logRejectedKey (logger: ErrorLogger): LoadOptions['onRejectedKey'] {
  return (kid, reason) => { logger.error({ kid, reason }, 'a signing_keys row is inconsistent: it is neither published nor used') }
}

export const WRONG_KEK_REMEDY = 'a signing key is sealed under another KEK (was `tessera keys rewrap` run?): restart this instance with the new TESSERA_KEK'

/** The onWrongKek of a running instance: the key is loaded without its private half, and the operator is told what ends that. */
export function logWrongKek (logger: ErrorLogger): NonNullable<LoadOptions['onWrongKek']> {
  return (err) => { logger.error({ kid: err.kid }, WRONG_KEK_REMEDY) }
}

/** A key's public half as the keyring holds it; the jwk member by member in jsonb's order (see loadKeyring). */
export function publicHalf (kid: string, n: string, e: string): Pick<LoadedKey, 'jwk' | 'publicKey' | 'publicPem'> {
  const jwk: PublicJwk = { e, n, alg: 'RS256', kid, kty: 'RSA', use: 'sig' }
  const publicKey = createPublicKey({ key: { ...jwk }, format: 'jwk' })
  return { jwk, publicKey, publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString() }
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

export async function loadKeyring (db: Db, kek: Buffer, keyring: Keyring, options: LoadOptions): Promise<void> {
  const stored = await db.selectFrom('signing_keys')
    .select(['kid', 'state', 'public_jwk', 'private_key_enc', 'unpublished_at', 'published_at', 'promoted_at'])
    .where('state', '<>', 'revoked')
    .execute()
  const rows: KeyRow[] = []
  for (const row of stored) {
    const defect = await rowDefect(row)
    if (defect === undefined) rows.push(row)
    else options.onRejectedKey(row.kid, defect)
  }
  const keys = rows.map((row): LoadedKey => {
    const known = keyring.get(row.kid)
    // Published member by member: whatever else a row holds (a prime, by a
    // bug or by hand; the schema's CHECK names only `d`) never reaches the JWKS.
    // In jsonb's order, the order the JWKS had when it published the row as
    // read, so its bytes and ETag stay those of earlier versions.
    const { jwk, publicKey, publicPem } = known ?? publicHalf(row.kid, row.public_jwk.n, row.public_jwk.e)
    const privateKey = row.private_key_enc === null
      ? undefined
      : known?.privateKey ?? openPrivateKey(kek, row.kid, row.private_key_enc, options)
    return {
      kid: row.kid,
      state: row.state,
      jwk,
      publicKey,
      publicPem,
      privateKey,
      publishedAt: row.published_at,
      promotedAt: row.promoted_at
    }
  })
  keyring.replace(keys)
}

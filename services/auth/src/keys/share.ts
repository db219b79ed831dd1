/**
 * The keyring handed from an instance's primary to each worker it forks. A
 * worker forked to replace another (a crash, a recycle) starts from what the
 * primary holds, as the workers forked before it did, so it does not depend
 * on the database answering at that moment, nor on the instance's KEK still
 * opening the stored keys after a `tessera keys rewrap`. Its later reloads
 * read signing_keys as every reload does.
 * @module
 */
import { createPrivateKey } from 'node:crypto'
import type { KeyState } from '../db/database.js'
import type { Keyring, LoadedKey } from './keyring.js'
import { publicHalf } from './load.js'

/** A loaded key as plain data for IPC: the private half as PKCS #8 DER in base64url, the times as ISO strings. */
export interface SharedKey { kid: string, state: KeyState, n: string, e: string, privateKey: string | null, publishedAt: string, promotedAt: string | null }

export function shareKeys (keyring: Keyring): SharedKey[] {
  return keyring.keys.map((key) => ({
    kid: key.kid,
    state: key.state,
    n: key.jwk.n,
    e: key.jwk.e,
    privateKey: key.privateKey?.export({ format: 'der', type: 'pkcs8' }).toString('base64url') ?? null,
    publishedAt: key.publishedAt.toISOString(),
    promotedAt: key.promotedAt?.toISOString() ?? null
  }))
}

export function adoptKeys (keyring: Keyring, shared: SharedKey[]): void {
  keyring.replace(shared.map((key): LoadedKey => ({
    kid: key.kid,
    state: key.state,
    ...publicHalf(key.kid, key.n, key.e),
    privateKey: key.privateKey === null ? undefined : createPrivateKey({ key: Buffer.from(key.privateKey, 'base64url'), format: 'der', type: 'pkcs8' }),
    publishedAt: new Date(key.publishedAt),
    promotedAt: key.promotedAt === null ? null : new Date(key.promotedAt)
  })))
}

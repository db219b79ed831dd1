/**
 * A new RSA signing key: jose generates it, its kid is the RFC 7638 thumbprint.
 * @module
 */
import { KeyObject } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose'
import type { PublicJwk } from '../db/database.js'

export interface GeneratedKey {
  kid: string
  bits: number
  publicJwk: PublicJwk
  privateKey: KeyObject
  pkcs8: Buffer
}

export async function generateSigningKey (bits: number): Promise<GeneratedKey> {
  const pair = await generateKeyPair('RS256', { modulusLength: bits, extractable: true })
  // jose hands back WebCrypto keys; signing uses node:crypto KeyObjects (tokens/jws.ts).
  const privateKey = KeyObject.from(pair.privateKey)
  const publicKey = KeyObject.from(pair.publicKey)
  const jwk = await exportJWK(publicKey)
  if (jwk.n === undefined || jwk.e === undefined) throw new TypeError('jose exported an incomplete RSA key')
  const kid = await calculateJwkThumbprint({ kty: 'RSA', n: jwk.n, e: jwk.e }, 'sha256')
  return {
    kid,
    bits,
    publicJwk: { kty: 'RSA', n: jwk.n, e: jwk.e, kid, alg: 'RS256', use: 'sig' },
    privateKey,
    pkcs8: privateKey.export({ format: 'der', type: 'pkcs8' })
  }
}

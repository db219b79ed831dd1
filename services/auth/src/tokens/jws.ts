/**
 * Compact JWS signing with node:crypto on the calling thread. jose signs
 * through WebCrypto, which runs on libuv's thread pool, the same four threads
 * that argon2 hashes on: under a login flood every refresh would queue its
 * signatures behind password hashes. A synchronous RS256 sign with a KeyObject
 * imported once costs about 0.2 ms and cannot queue. RSASSA-PKCS1-v1_5 is
 * deterministic, so the same header and claims give the same token byte for
 * byte (the refresh grace relies on it). See docs/decisions.md.
 * @module
 */
import { sign, type KeyObject } from 'node:crypto'

export interface JwsHeader {
  alg: 'RS256'
  kid: string
  typ: 'at+jwt' | 'rt+jwt'
}

const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')

export function signCompactJws (header: JwsHeader, claims: object, privateKey: KeyObject): string {
  const input = `${encode(header)}.${encode(claims)}`
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
}

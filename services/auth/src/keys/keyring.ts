/**
 * The in-memory view of the signing keys: which one signs, which public keys
 * verify what, and the JWKS body with its ETag. Replaced whole on every
 * reload; the JWKS body (and so its ETag) changes only when the published set
 * does, because it is derived from that set alone.
 * @module
 */
import { createHash, type KeyObject } from 'node:crypto'
import type { KeyState, PublicJwk } from '../db/database.js'

export interface LoadedKey {
  kid: string
  state: KeyState
  jwk: PublicJwk
  publicKey: KeyObject
  publicPem: string
  privateKey: KeyObject | undefined
  /** When it was published: a `next` key signs once it has been published for TESSERA_KEY_PUBLISH_LEAD. */
  publishedAt: Date
  /** When it started signing; null while it waits as `next`. */
  promotedAt: Date | null
}

export interface Jwks {
  body: string
  etag: string
  kids: string[]
}

/** Published keys verify access tokens: a `next` key is published before it signs. */
const PUBLISHED: ReadonlySet<KeyState> = new Set(['current', 'next', 'previous'])
/** Refresh tokens stay verifiable after their key leaves the JWKS, until they expire. */
const VERIFIES_REFRESH: ReadonlySet<KeyState> = new Set(['current', 'next', 'previous', 'retired'])

function buildJwks (keys: LoadedKey[]): Jwks {
  // Ordered by kid, not state: a promotion leaves the published set as it was, so it must leave the body (and ETag) too.
  // Code-unit order, not localeCompare's: instances under different locales must serve the same body and ETag.
  const published = keys.filter((k) => PUBLISHED.has(k.state)).sort((a, b) => a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0)
  const body = JSON.stringify({ keys: published.map((k) => k.jwk) })
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`
  return { body, etag, kids: published.map((k) => k.kid) }
}

export class Keyring {
  #keys = new Map<string, LoadedKey>()
  #current: LoadedKey | undefined
  #jwks: Jwks = buildJwks([])
  #version = 0

  replace (keys: LoadedKey[]): void {
    this.#keys = new Map(keys.map((k) => [k.kid, k]))
    this.#current = keys.find((k) => k.state === 'current' && k.privateKey !== undefined)
    const jwks = buildJwks(keys)
    if (jwks.body !== this.#jwks.body) this.#jwks = jwks
    this.#version++
  }

  /** Bumped on every replace; lets callers notice a reload. */
  get version (): number { return this.#version }

  get signer (): { kid: string, privateKey: KeyObject } | undefined {
    const key = this.#current
    return key?.privateKey === undefined ? undefined : { kid: key.kid, privateKey: key.privateKey }
  }

  get jwks (): Jwks { return this.#jwks }

  get keys (): LoadedKey[] { return [...this.#keys.values()] }

  get (kid: string): LoadedKey | undefined { return this.#keys.get(kid) }

  /** The private half of a key that still has one: grace re-signs with the key that first signed. */
  privateKey (kid: string): KeyObject | undefined { return this.#keys.get(kid)?.privateKey }

  accessVerificationKey (kid: string): LoadedKey | undefined {
    const key = this.#keys.get(kid)
    return key !== undefined && PUBLISHED.has(key.state) ? key : undefined
  }

  refreshVerificationKey (kid: string): LoadedKey | undefined {
    const key = this.#keys.get(kid)
    return key !== undefined && VERIFIES_REFRESH.has(key.state) ? key : undefined
  }
}

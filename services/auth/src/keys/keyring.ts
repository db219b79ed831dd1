/**
 * The in-memory view of the signing keys: which one signs, which public keys
 * verify what, and the JWKS body with its ETag. Replaced whole on every
 * reload; the JWKS body (and so its ETag) changes only when the published set
 * does, because it is derived from that set alone.
 *
 * An HTTP worker's keyring also catches up on demand (catchUp below): a
 * token naming a kid it does not hold makes it reload from the database, at
 * most once per cooldown, because another instance may already sign with a
 * key whose NOTIFY this one has not heard (docs/decisions.md, "A token's
 * unknown kid reloads the keyring").
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

/** What a verification depends on: which kids are held, in which state. */
function verificationShape (keys: LoadedKey[]): string {
  return keys.map((k) => `${k.kid}:${k.state}`).sort().join(' ')
}

/** Our kids are RFC 7638 SHA-256 thumbprints: 43 base64url characters. Only such a kid can be one we have not heard of yet. */
const KID_SHAPE = /^[A-Za-z0-9_-]{43}$/

/** How the keyring catches up on demand: the reload (which logs its own failure and never rejects), and at most how often it may run. */
export interface CatchUp {
  /** Given the kid that set it off, for what it logs; requests that meet it running wait for it with their own kids. */
  reload: (kid: string) => Promise<void>
  cooldownMs: number
  /** Monotonic milliseconds; injectable for tests. */
  now?: () => number
}

export class Keyring {
  #keys = new Map<string, LoadedKey>()
  #current: LoadedKey | undefined
  #jwks: Jwks = buildJwks([])
  #shape = verificationShape([])
  #version = 0
  #catchUp: Required<CatchUp> | undefined
  #catchUpStartedAt = -Infinity
  #catchingUp: Promise<void> | undefined

  replace (keys: LoadedKey[]): void {
    this.#keys = new Map(keys.map((k) => [k.kid, k]))
    this.#current = keys.find((k) => k.state === 'current' && k.privateKey !== undefined)
    const jwks = buildJwks(keys)
    if (jwks.body !== this.#jwks.body) this.#jwks = jwks
    const shape = verificationShape(keys)
    if (shape !== this.#shape) {
      this.#shape = shape
      this.#version++
    }
  }

  /**
   * Bumped when a replace changes a kid held or its state: what a
   * verification depends on. A reload that finds what was already held
   * (the periodic one, a catch-up for a forged kid) leaves it, so the
   * verified tokens remembered by verify-access.ts stay remembered.
   */
  get version (): number { return this.#version }

  /** Lets catchUp reload; set in an HTTP worker, whose reloads read the database. */
  catchUpWith (catchUp: CatchUp): void {
    this.#catchUp = { now: () => performance.now(), ...catchUp }
  }

  /**
   * For a token whose kid this keyring does not hold: reloads, then says
   * whether the kid is held now. A reload runs at most once per cooldown
   * (a request arriving while one runs waits for it), so a flood of forged
   * kids costs each worker one small read per cooldown, never one per
   * request; within the cooldown after a reload an unknown kid is refused
   * as before. A kid held already (a retired key met at /v1) reloads
   * nothing: its state is known.
   */
  async catchUp (kid: string): Promise<boolean> {
    const catchUp = this.#catchUp
    if (catchUp === undefined || this.#keys.has(kid) || !KID_SHAPE.test(kid)) return false
    if (this.#catchingUp === undefined) {
      const now = catchUp.now()
      if (now - this.#catchUpStartedAt < catchUp.cooldownMs) return false
      this.#catchUpStartedAt = now
      this.#catchingUp = catchUp.reload(kid).finally(() => { this.#catchingUp = undefined })
    }
    await this.#catchingUp
    return this.#keys.has(kid)
  }

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

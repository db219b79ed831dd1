/**
 * The instance's one hashing queue, seen from an HTTP worker: each hash or
 * verify is asked of the primary, whose PasswordHasher admits it or refuses
 * it at once. Each worker lets at most its share of the queue's bound past
 * the shed check, and the primary announces when the whole queue is full, so
 * a worker sheds a login before touching the database, as a single process
 * does.
 * @module
 */
import { OAuthError } from '../errors.js'
import { hashingOverloaded, type PasswordHasher, type PasswordHashing } from '../passwords/hasher.js'
import { needsRehash } from '../passwords/verify.js'
import { RemoteOverloaded } from '../util/rpc.js'

export type AskPrimary = <T>(kind: string, body: unknown) => Promise<T>

export class InstanceHashing implements PasswordHashing {
  saturated = false
  /** This worker's share of the instance's queue, from the primary at boot (hashingShare, passwords/hasher.ts). */
  capacity = 1
  readonly #ask: AskPrimary

  constructor (ask: AskPrimary) {
    this.#ask = ask
  }

  overloaded (): OAuthError {
    return hashingOverloaded()
  }

  async #asked<T> (kind: string, body: unknown): Promise<T> {
    try {
      return await this.#ask<T>(kind, body)
    } catch (err) {
      if (err instanceof RemoteOverloaded) throw this.overloaded()
      throw err
    }
  }

  async hash (password: string): Promise<string> {
    return await this.#asked<string>('hash', { password })
  }

  async verify (hash: string, password: string): Promise<boolean> {
    return await this.#asked<boolean>('verify', { hash, password })
  }

  async dummyVerify (password: string): Promise<false> {
    return await this.#asked<false>('dummy-verify', { password })
  }

  needsRehash (hash: string): boolean {
    return needsRehash(hash)
  }
}

/** The primary's answers to InstanceHashing. */
export function hashingHandlers (hasher: PasswordHasher): Record<string, (body: never) => Promise<unknown>> {
  return {
    hash: async (body: { password: string }) => await hasher.hash(body.password),
    verify: async (body: { hash: string, password: string }) => await hasher.verify(body.hash, body.password),
    'dummy-verify': async (body: { password: string }) => await hasher.dummyVerify(body.password)
  }
}

/** The refusal InstanceHashing turns back into a 503. */
export function isHashingRefusal (err: unknown): boolean {
  return err instanceof OAuthError && err.error === 'temporarily_unavailable'
}

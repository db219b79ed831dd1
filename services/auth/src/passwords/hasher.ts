/**
 * argon2id hashing behind a bounded queue. At most `concurrency` hashes run at
 * once (each holds a libuv pool thread for ~16 ms); at most `depth` wait.
 * Past that the caller is refused at once with 503, so a login flood sheds
 * instead of queueing without bound and never starves refresh or the JWKS.
 * @module
 */
import argon2 from 'argon2'
import fastq, { type queueAsPromised } from 'fastq'
import { OAuthError } from '../errors.js'
import { isDjangoHash, verifyDjangoHash } from './django.js'

/** OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane. */
export const ARGON2_PARAMS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const

export interface HasherOptions {
  concurrency: number
  depth: number
  params?: { memoryCost: number, timeCost: number, parallelism: number }
}

type Job = () => Promise<unknown>

export class PasswordHasher {
  readonly #queue: queueAsPromised<Job, unknown>
  readonly #depth: number
  readonly #params: typeof ARGON2_PARAMS | (HasherOptions['params'] & { type: typeof argon2.argon2id })
  #dummyHash: Promise<string> | undefined
  #shed = 0

  constructor (options: HasherOptions) {
    this.#queue = fastq.promise(async (job: Job) => await job(), options.concurrency)
    this.#depth = options.depth
    this.#params = options.params === undefined ? ARGON2_PARAMS : { type: argon2.argon2id, ...options.params }
  }

  get inFlight (): number { return this.#queue.running() }
  get waiting (): number { return this.#queue.length() }
  get shed (): number { return this.#shed }

  /** True when a new hash would be refused: callers check it before doing other work for a login. */
  get saturated (): boolean {
    return this.#queue.length() >= this.#depth && this.#queue.running() >= this.#queue.concurrency
  }

  /** Counts the refusal; throw what it returns. */
  overloaded (): OAuthError {
    this.#shed++
    return new OAuthError('temporarily_unavailable', 'too many logins in progress; retry shortly', { retryAfter: 1, detail: 'hashing queue full' })
  }

  async #run<T> (job: () => Promise<T>): Promise<T> {
    if (this.saturated) throw this.overloaded()
    return await this.#queue.push(job) as T
  }

  async hash (password: string): Promise<string> {
    return await this.#run(async () => await argon2.hash(password, this.#params))
  }

  /** Every verify, Tessera's argon2id or an imported Django hash (by its prefix), waits in the same queue. */
  async verify (hash: string, password: string): Promise<boolean> {
    return await this.#run(async () => isDjangoHash(hash)
      ? await verifyDjangoHash(hash, password)
      : await argon2.verify(hash, password).catch(() => false))
  }

  /** Costs what a real verify costs, so unknown usernames cannot be told apart by timing. */
  async dummyVerify (password: string): Promise<false> {
    this.#dummyHash ??= argon2.hash('tessera-dummy-password', this.#params)
    const hash = await this.#dummyHash
    await this.verify(hash, password)
    return false
  }

  /** An imported Django hash is always replaced by Tessera's argon2id at the first successful login. */
  needsRehash (hash: string): boolean {
    return isDjangoHash(hash) || argon2.needsRehash(hash, this.#params)
  }
}

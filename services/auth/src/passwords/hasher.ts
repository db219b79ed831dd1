/**
 * Password hashing behind a bounded queue. At most `concurrency` hashes run at
 * once; at most `depth` wait. Past that the caller is refused at once with
 * 503, so a login flood sheds instead of queueing without bound and never
 * starves refresh or the JWKS.
 *
 * Where a hash runs is the engine's business: in this process (the CLI and
 * in-process tests), or in the instance's hashing process at a lower OS
 * priority (passwords/hashing-process.ts), which is what a served instance
 * uses. HTTP workers reach the instance's one queue through the primary
 * (cluster/hashing.ts); they see it as `PasswordHashing`.
 * @module
 */
import fastq, { type queueAsPromised } from 'fastq'
import { OAuthError } from '../errors.js'
import { ARGON2_PARAMS, hashPassword, needsRehash, verifyPassword, type Argon2Params, type Verdict } from './verify.js'

/** The bench hashes its fixtures with Tessera's own parameters. */
export { ARGON2_PARAMS }

/** What login, sign-up and password change need of hashing, wherever the queue lives. */
export interface PasswordHashing {
  /** True when a new hash would be refused: callers check it before doing other work for a login. */
  readonly saturated: boolean
  /**
   * How many requests that hash this process lets past the shed check at
   * once: its share of the queue's bound, so the check itself admits no more
   * than the queue can take and the rest never start their database work.
   */
  readonly capacity: number
  /** Counts the refusal; throw what it returns. */
  overloaded: () => OAuthError
  hash: (password: string) => Promise<string>
  verify: (hash: string, password: string) => Promise<boolean>
  /** Costs what a real verify costs, so unknown usernames cannot be told apart by timing. */
  dummyVerify: (password: string) => Promise<false>
  needsRehash: (hash: string) => boolean
}

/** Where hashes run. */
export interface HashEngine {
  hash: (password: string) => Promise<string>
  verify: (encodedHash: string, password: string) => Promise<Verdict>
}

export interface HasherOptions {
  concurrency: number
  depth: number
  params?: Argon2Params
  /** Defaults to hashing in this process. */
  engine?: HashEngine
  /**
   * Told when the queue fills and again once it has drained a quarter of its
   * bound, so other processes can shed before asking: announcing every single
   * flip at the bound would let a burst through (and refuse it here after its
   * database work) after each finished hash.
   */
  onSaturationChange?: (saturated: boolean) => void
}

type Job = () => Promise<unknown>

/** The 503 every full hashing queue answers with. */
export function hashingOverloaded (): OAuthError {
  return new OAuthError('temporarily_unavailable', 'too many logins in progress; retry shortly', { retryAfter: 1, detail: 'hashing queue full' })
}

export class PasswordHasher implements PasswordHashing {
  readonly #queue: queueAsPromised<Job, unknown>
  readonly #depth: number
  readonly #params: Argon2Params
  readonly #engine: HashEngine
  readonly #onSaturationChange: ((saturated: boolean) => void) | undefined
  #dummyHash: Promise<string> | undefined
  #announced = false
  #shed = 0

  constructor (options: HasherOptions) {
    this.#queue = fastq.promise(async (job: Job) => await job(), options.concurrency)
    this.#depth = options.depth
    this.#params = options.params ?? ARGON2_PARAMS
    const params = this.#params
    this.#engine = options.engine ?? {
      hash: async (password) => await hashPassword(password, params),
      verify: async (encodedHash, password) => await verifyPassword(encodedHash, password, params)
    }
    this.#onSaturationChange = options.onSaturationChange
  }

  get inFlight (): number { return this.#queue.running() }
  get waiting (): number { return this.#queue.length() }
  get shed (): number { return this.#shed }
  get concurrency (): number { return this.#queue.concurrency }
  get depth (): number { return this.#depth }
  get capacity (): number { return this.#depth + this.#queue.concurrency }

  get saturated (): boolean {
    return this.#queue.length() >= this.#depth && this.#queue.running() >= this.#queue.concurrency
  }

  overloaded (): OAuthError {
    this.#shed++
    return hashingOverloaded()
  }

  /** Below this many admitted (waiting + running) a full queue is announced as open again. */
  get #reopensBelow (): number {
    return Math.ceil((this.#depth + this.#queue.concurrency) * 3 / 4)
  }

  #saturationMayHaveChanged (): void {
    const announce = this.#announced
      ? this.#queue.length() + this.#queue.running() >= this.#reopensBelow
      : this.saturated
    if (announce === this.#announced) return
    this.#announced = announce
    this.#onSaturationChange?.(announce)
  }

  async #run<T> (job: () => Promise<T>): Promise<T> {
    if (this.saturated) throw this.overloaded()
    const done = this.#queue.push(job)
    this.#saturationMayHaveChanged()
    try {
      return await done as T
    } finally {
      this.#saturationMayHaveChanged()
    }
  }

  async hash (password: string): Promise<string> {
    return await this.#run(async () => await this.#engine.hash(password))
  }

  /** Every verify, Tessera's argon2id or an imported Django hash (passwords/verify.ts picks by format), waits in the same queue. */
  async verify (hash: string, password: string): Promise<boolean> {
    return (await this.#run(async () => await this.#engine.verify(hash, password))).ok
  }

  async dummyVerify (password: string): Promise<false> {
    this.#dummyHash ??= this.#engine.hash('tessera-dummy-password')
    const hash = await this.#dummyHash
    await this.verify(hash, password)
    return false
  }

  /** An imported Django hash is always replaced by Tessera's argon2id at the first successful login (passwords/verify.ts). */
  needsRehash (hash: string): boolean {
    return needsRehash(hash, this.#params)
  }
}

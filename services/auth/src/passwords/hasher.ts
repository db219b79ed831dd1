/**
 * Password hashing behind a bounded queue. At most `concurrency` hashes run at
 * once; at most `depth` wait, and no more than the measured hashing rate
 * finishes within `maxWaitMs`. Past that the caller is refused at once with
 * 503, so a login flood sheds instead of queueing without bound and never
 * starves refresh or the JWKS; a hash whose turn comes after `maxWaitMs` all
 * the same (the rate fell after it was admitted) is refused then rather than
 * started late.
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
  /** The most that may wait, whatever the rate. */
  depth: number
  /**
   * The longest a hash may wait, in milliseconds: a new one is admitted only
   * while, at the rate measured, it would be done within this (until the
   * first measurement `depth` alone bounds the queue), and one still waiting
   * for its slot this long is refused then. Unset: no bound in time.
   */
  maxWaitMs?: number
  /** Milliseconds on a monotonic clock; performance.now by default. */
  now?: () => number
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
  /** Told when `capacity` changes with the measured rate, so other processes can take their share of it. */
  onCapacityChange?: (capacity: number) => void
}

interface Job { run: () => Promise<unknown>, admittedAt: number }

/**
 * The rate is measured over this much time with every slot taken (only then
 * is it the hashing's rate rather than the logins').
 */
const RATE_WINDOW_MS = 500
/**
 * The estimate is the best of the last few measurements (about two seconds
 * of busy hashing): a slow window (a cold start, a burst of other work) would
 * otherwise shrink the queue, shed, and the storm of sheds would keep the rate
 * down. An estimate too high for a while costs little: a hash whose turn
 * comes past the bound is refused then.
 */
const RATE_WINDOWS_KEPT = 4

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
  readonly #onCapacityChange: ((capacity: number) => void) | undefined
  readonly #maxWaitMs: number
  readonly #now: () => number
  readonly #waitListeners: Array<(seconds: number) => void> = []
  #dummyHash: Promise<string> | undefined
  #announced = false
  #shed = 0
  /** Hashes per second with every slot taken, the latest measurements first. */
  readonly #rates: number[] = []
  #running = 0
  #busyMs = 0
  #busyDone = 0
  #changedAt = 0

  constructor (options: HasherOptions) {
    this.#queue = fastq.promise(async (job: Job) => await this.#start(job), options.concurrency)
    this.#depth = options.depth
    this.#maxWaitMs = options.maxWaitMs ?? Infinity
    this.#now = options.now ?? (() => performance.now())
    this.#onCapacityChange = options.onCapacityChange
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
  /**
   * How many may wait now: `depth`, or fewer when the measured rate would not
   * finish them within `maxWaitMs`. The last one admitted is done once those
   * ahead of it and the `concurrency` already handed over are:
   * (waiting + concurrency) / rate ≤ maxWait.
   */
  get depth (): number {
    const rate = this.rate
    if (rate === undefined || this.#maxWaitMs === Infinity) return this.#depth
    return Math.min(this.#depth, Math.max(0, Math.floor(rate * this.#maxWaitMs / 1000) - this.#queue.concurrency))
  }

  get capacity (): number { return this.depth + this.#queue.concurrency }
  /** Hashes per second with every slot taken, the best of the last measurements; undefined until the first. */
  get rate (): number | undefined { return this.#rates.length === 0 ? undefined : Math.max(...this.#rates) }

  get saturated (): boolean {
    return this.#queue.length() >= this.depth && this.#queue.running() >= this.#queue.concurrency
  }

  /** Each started hash's wait for its slot, in seconds (the metrics' histogram). */
  observeWaits (listener: (seconds: number) => void): void {
    this.#waitListeners.push(listener)
  }

  overloaded (): OAuthError {
    this.#shed++
    return hashingOverloaded()
  }

  /** Below this many admitted (waiting + running) a full queue is announced as open again. */
  get #reopensBelow (): number {
    return Math.ceil(this.capacity * 3 / 4)
  }

  #saturationMayHaveChanged (): void {
    const announce = this.#announced
      ? this.#queue.length() + this.#queue.running() >= this.#reopensBelow
      : this.saturated
    if (announce === this.#announced) return
    this.#announced = announce
    this.#onSaturationChange?.(announce)
  }

  /** Busy time is time with every slot taken: the only time the rate of finished hashes is the hashing's rate. */
  #account (now: number): void {
    if (this.#running >= this.#queue.concurrency) this.#busyMs += now - this.#changedAt
    this.#changedAt = now
  }

  async #start (job: Job): Promise<unknown> {
    const now = this.#now()
    const waited = now - job.admittedAt
    if (waited > this.#maxWaitMs) throw this.overloaded()
    for (const listener of this.#waitListeners) listener(waited / 1000)
    this.#account(now)
    this.#running++
    try {
      return await job.run()
    } finally {
      this.#finished()
    }
  }

  #finished (): void {
    this.#account(this.#now())
    if (this.#running >= this.#queue.concurrency) this.#busyDone++
    this.#running--
    if (this.#busyMs < RATE_WINDOW_MS) return
    const measured = this.#busyDone * 1000 / this.#busyMs
    this.#busyMs = 0
    this.#busyDone = 0
    const capacity = this.capacity
    this.#rates.unshift(measured)
    this.#rates.length = Math.min(this.#rates.length, RATE_WINDOWS_KEPT)
    if (this.capacity !== capacity) this.#onCapacityChange?.(this.capacity)
  }

  async #run<T> (run: () => Promise<T>): Promise<T> {
    if (this.saturated) throw this.overloaded()
    const done = this.#queue.push({ run, admittedAt: this.#now() })
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

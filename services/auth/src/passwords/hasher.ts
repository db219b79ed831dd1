/**
 * Password hashing behind a bounded queue. At most `concurrency` hashes run at
 * once; at most `depth` wait, and no more than the hashing threads finish
 * within `maxWaitMs` at the CPU cost of a hash measured where hashes run.
 * Past that the caller is refused at once with 503, so a login flood sheds
 * instead of queueing without bound and never starves refresh or the JWKS; a
 * hash whose turn comes after `maxWaitMs` all the same (the hashing got less
 * CPU than its cost allows: a storm of sheds, other work on the host) is
 * refused then rather than started late.
 *
 * Where a hash runs is the engine's business: in this process, which is
 * where the queue is too: the CLI's and in-process tests' one process, or a
 * served instance's hashing process, at a lower OS priority
 * (passwords/hashing-process.ts). HTTP workers ask that process's queue
 * directly (cluster/hashing.ts); they see it as `PasswordHashing`.
 * @module
 */
import fastq, { type queueAsPromised } from 'fastq'
import { OAuthError } from '../errors.js'
import { ARGON2_PARAMS, hashPassword, needsRehash, verifiable, verifyPassword, type Argon2Params, type Verdict } from './verify.js'

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
  /**
   * What one hash costs a hashing thread that has a core, in ms (CPU time,
   * measured where hashes run); undefined until measured, or for an engine
   * that does not measure.
   */
  readonly costMs?: number | undefined
}

export interface HasherOptions {
  concurrency: number
  /** The most that may wait, whatever the rate. */
  depth: number
  /**
   * The longest a hash may wait, in milliseconds: a new one is admitted only
   * while the hashing threads, at the engine's measured cost of a hash
   * (`ASSUMED_COST_MS` until the first measurement), would be done with it
   * within this, and one still waiting for its slot this long is refused
   * then. Unset: no bound in time.
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
  /** Told when `capacity` changes with the measured cost, so other processes can take their share of it. */
  onCapacityChange?: (capacity: number) => void
}

interface Job { run: () => Promise<unknown>, admittedAt: number }

/**
 * Before the engine has measured a hash: a cost above any measured here (an
 * argon2id hash at the default parameters takes 28-30 ms of CPU on the
 * measured machine), so a fresh instance admits a little less than it will,
 * never more; with two threads and a 500 ms bound, 20 at once.
 */
const ASSUMED_COST_MS = 50

/**
 * The 503 every full hashing queue answers with, on every route that hashes:
 * logins, sign-up and password change alike, so its words name the queue,
 * not one of them (the queue, where it refuses, does not know the route).
 */
export function hashingOverloaded (): OAuthError {
  return new OAuthError('temporarily_unavailable', 'too many passwords are being hashed; retry shortly', { retryAfter: 1, detail: 'hashing queue full' })
}

/**
 * The 503 of a hash the hashing process never ran: it died with the hash in
 * hand, or is being replaced (cluster/hashing.ts). The next login may well
 * succeed, so it is a retry, not a fault.
 */
export function hashingRestarting (cause: unknown): OAuthError {
  return new OAuthError('temporarily_unavailable', 'password hashing is restarting; retry shortly', { retryAfter: 1, detail: 'the hashing process is gone', cause })
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
  #announcedCapacity: number

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
    this.#announcedCapacity = this.capacity
  }

  get inFlight (): number { return this.#queue.running() }
  get waiting (): number { return this.#queue.length() }
  get shed (): number { return this.#shed }
  get concurrency (): number { return this.#queue.concurrency }
  /**
   * How many may wait now: `depth`, or fewer when the hashing threads would
   * not finish them within `maxWaitMs`. The last one admitted is done once
   * those ahead of it and the `concurrency` already handed over are:
   * (waiting + concurrency) / rate ≤ maxWait.
   */
  get depth (): number {
    if (this.#maxWaitMs === Infinity) return this.#depth
    return Math.min(this.#depth, Math.max(0, Math.floor(this.rate * this.#maxWaitMs / 1000) - this.#queue.concurrency))
  }

  get capacity (): number { return this.depth + this.#queue.concurrency }
  /**
   * Hashes per second the threads finish when they have their cores:
   * `concurrency` (one job per hashing thread) ÷ the CPU cost of one. Not
   * the hashes finished per second: those fall when a storm of shed answers
   * takes the CPU, and a bound that followed them would admit fewer, shed
   * more and keep the storm going. Where the hashing gets less CPU than its
   * cost allows, a hash whose turn comes past the bound is refused then,
   * and the clients waiting meanwhile are not retrying.
   */
  get rate (): number { return this.#queue.concurrency * 1000 / (this.#engine.costMs ?? ASSUMED_COST_MS) }

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

  async #start (job: Job): Promise<unknown> {
    const now = this.#now()
    const waited = now - job.admittedAt
    if (waited > this.#maxWaitMs) throw this.overloaded()
    for (const listener of this.#waitListeners) listener(waited / 1000)
    try {
      return await job.run()
    } finally {
      this.#finished()
    }
  }

  /** Each answer of the engine brings its latest cost, and with it perhaps a new capacity. */
  #finished (): void {
    const capacity = this.capacity
    if (capacity === this.#announcedCapacity) return
    this.#announcedCapacity = capacity
    this.#onCapacityChange?.(capacity)
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
    // A hash nothing reads would answer at once, and the time would tell an
    // account with no usable password from one that is checked: it costs a
    // real verify, as an unknown user does.
    if (!verifiable(hash)) return await this.dummyVerify(password)
    return (await this.#run(async () => await this.#engine.verify(hash, password))).ok
  }

  async dummyVerify (password: string): Promise<false> {
    // Made once, through the queue like any hash (counted, bounded, shed);
    // a failed making is forgotten, so a hashing process that died with it
    // in hand does not leave every later unknown name refused.
    const making = this.#dummyHash ??= this.hash('tessera-dummy-password')
    let hash: string
    try {
      hash = await making
    } catch (err) {
      if (this.#dummyHash === making) this.#dummyHash = undefined
      throw err
    }
    await this.verify(hash, password)
    return false
  }

  /** An imported Django hash is always replaced by Tessera's argon2id at the first successful login (passwords/verify.ts). */
  needsRehash (hash: string): boolean {
    return needsRehash(hash, this.#params)
  }
}

/** A worker's share of the queue: together the workers never admit more than it holds. */
export function hashingShare (hasher: Pick<PasswordHasher, 'capacity'>, workers: number): number {
  return Math.max(1, Math.ceil(hasher.capacity / workers))
}

/** What a worker asks of the instance's queue (cluster/hashing.ts), answered where the queue lives (passwords/hashing-process.ts). */
export function hashingRequests (hasher: PasswordHasher): Record<string, (body: never) => Promise<unknown>> {
  return {
    hash: async (body: { password: string }) => await hasher.hash(body.password),
    verify: async (body: { hash: string, password: string }) => await hasher.verify(body.hash, body.password),
    'dummy-verify': async (body: { password: string }) => await hasher.dummyVerify(body.password)
  }
}

/** The queue's refusal, which travels to the worker as `overloaded` and becomes its own 503 there. */
export function isHashingRefusal (err: unknown): boolean {
  return err instanceof OAuthError && err.error === 'temporarily_unavailable'
}

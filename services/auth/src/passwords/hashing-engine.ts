/**
 * The primary's side of the hashing process (passwords/hashing-process.ts):
 * starts it, asks it to hash and verify, starts a new one if it dies, stops
 * it last. The bounded queue in front of it is a PasswordHasher in the
 * primary, one per instance.
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import { Asker, isAnswer, isNotice, PeerGone, type Send } from '../util/rpc.js'
import { hashingRestarting, type HashEngine } from './hasher.js'
import type { Verdict } from './verify.js'

const ENTRY = fileURLToPath(new URL('./hashing-process.js', import.meta.url))
const RESTART_DELAY_MS = 500
/**
 * What the hashing process is started with: libuv's pool sized to its hashing
 * slots (argon2 runs on that pool, and libuv reads the size from the
 * environment), beside the few variables the primary passes on
 * (config.ts, HASHING_PROCESS_ENV: how Node and the C library run, none of
 * the instance's settings or secrets).
 */
function hashingEnv (concurrency: number, inherited: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  return { ...inherited, UV_THREADPOOL_SIZE: String(concurrency) }
}

export interface HashingProcessInfo { pid: number, priority: number }
/** An answer of the hashing process: the result, and what one hash costs there now (CPU ms, averaged over the last few). */
export interface Costed<T> { value: T, costMs: number }

export class HashingProcess implements HashEngine {
  readonly #asker = new Asker()
  readonly #concurrency: number
  readonly #nice: number
  readonly #logger: Logger
  readonly #inheritedEnv: Readonly<Record<string, string>>
  #child: ChildProcess | undefined
  #ready: Promise<void>
  #stopping = false
  #costMs: number | undefined

  /**
   * Starts the process with `concurrency` hashing threads at nice `nice`;
   * `ready` says when it runs at that priority. Asks made before wait for it.
   */
  constructor (concurrency: number, nice: number, logger: Logger, inheritedEnv: Readonly<Record<string, string>>) {
    this.#concurrency = concurrency
    this.#nice = nice
    this.#logger = logger
    this.#inheritedEnv = inheritedEnv
    this.#ready = this.#spawn()
  }

  get ready (): Promise<void> { return this.#ready }

  /** CPU ms one hash costs in the hashing process, as its last answer said; undefined before the first. */
  get costMs (): number | undefined { return this.#costMs }

  async #asked<T> (kind: string, body: unknown): Promise<T> {
    try {
      await this.#ready
      const { value, costMs } = await this.#asker.ask<Costed<T>>(this.#send, kind, body)
      this.#costMs = costMs
      return value
    } catch (err) {
      // The process died with this hash, or is being replaced: it never ran.
      if (err instanceof PeerGone) throw hashingRestarting(err)
      throw err
    }
  }

  async #spawn (): Promise<void> {
    const child = fork(ENTRY, [String(this.#nice), String(this.#concurrency), this.#logger.level], {
      env: hashingEnv(this.#concurrency, this.#inheritedEnv),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json'
    })
    this.#child = child
    const ready = new Promise<HashingProcessInfo>((resolve, reject) => {
      child.once('exit', (code) => reject(new PeerGone(`the hashing process exited with ${String(code)} before it was ready`)))
      child.on('message', (message) => {
        if (isAnswer(message)) this.#asker.settle(message)
        else if (isNotice(message) && message.kind === 'ready') resolve(message.body as HashingProcessInfo)
      })
    })
    child.on('exit', (code, signal) => {
      this.#asker.failAll('the hashing process exited')
      if (this.#stopping || this.#child !== child) return
      this.#logger.error({ code, signal }, 'the hashing process exited; starting another')
      setTimeout(() => {
        this.#ready = this.#spawn()
        this.#ready.catch((err: unknown) => this.#logger.error({ err }, 'could not restart the hashing process'))
      }, RESTART_DELAY_MS).unref()
    })
    const info = await ready
    this.#logger.info({ hashing_pid: info.pid, priority: info.priority, concurrency: this.#concurrency }, 'hashing process started')
  }

  readonly #send: Send = (message) => {
    if (this.#child?.connected !== true) throw new PeerGone('the hashing process is not running')
    this.#child.send(message)
  }

  async hash (password: string): Promise<string> {
    return await this.#asked<string>('hash', { password })
  }

  async verify (encodedHash: string, password: string): Promise<Verdict> {
    return await this.#asked<Verdict>('verify', { encodedHash, password })
  }

  async stop (): Promise<void> {
    this.#stopping = true
    await this.#ready.catch(() => {})
    const child = this.#child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.disconnect()
    await exited
  }
}

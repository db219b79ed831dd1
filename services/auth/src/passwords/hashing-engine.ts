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
 * The primary's environment variables the hashing process gets: how Node
 * and the C library run, nothing of the instance's. It reads no setting of
 * Tessera (its two are arguments), and the environment of a process lasts
 * its whole life (/proc/PID/environ, a core dump): a flaw in the native
 * hashing code it runs on passwords from the network must not find
 * TESSERA_KEK or DATABASE_URL there. An allow-list, so a secret added later
 * is kept out without anyone remembering this.
 * - NODE_OPTIONS: the operator's flags for every Node process (a heap limit,
 *   FIPS, a test runner's coverage hook, which then adds what it needs itself);
 *   NODE_V8_COVERAGE: Node's coverage of the process, which c8-style tools read;
 *   OPENSSL_CONF: the OpenSSL configuration Node loads (how FIPS is turned on),
 *   which the Django hashes' PBKDF2 and scrypt use.
 * - LD_LIBRARY_PATH, LD_PRELOAD: the same node binary starts as the primary
 *   did (a shared library found there, a preloaded allocator); MALLOC_ARENA_MAX,
 *   GLIBC_TUNABLES: glibc's allocator tuning, which matters most in this
 *   process, whose threads each take 19 MiB or more per argon2 hash.
 */
const INHERITED_ENV = ['NODE_OPTIONS', 'NODE_V8_COVERAGE', 'OPENSSL_CONF', 'LD_LIBRARY_PATH', 'LD_PRELOAD', 'MALLOC_ARENA_MAX', 'GLIBC_TUNABLES']

function hashingEnv (concurrency: number): NodeJS.ProcessEnv {
  // One libuv pool thread per hashing slot: argon2 runs on that pool (libuv reads the size from the environment).
  const env: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: String(concurrency) }
  for (const name of INHERITED_ENV) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return env
}

export interface HashingProcessInfo { pid: number, priority: number }
/** An answer of the hashing process: the result, and what one hash costs there now (CPU ms, averaged over the last few). */
export interface Costed<T> { value: T, costMs: number }

export class HashingProcess implements HashEngine {
  readonly #asker = new Asker()
  readonly #concurrency: number
  readonly #nice: number
  readonly #logger: Logger
  #child: ChildProcess | undefined
  #ready: Promise<void>
  #stopping = false
  #costMs: number | undefined

  /**
   * Starts the process with `concurrency` hashing threads at nice `nice`;
   * `ready` says when it runs at that priority. Asks made before wait for it.
   */
  constructor (concurrency: number, nice: number, logger: Logger) {
    this.#concurrency = concurrency
    this.#nice = nice
    this.#logger = logger
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
    const child = fork(ENTRY, [String(this.#nice), String(this.#concurrency)], {
      env: hashingEnv(this.#concurrency),
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

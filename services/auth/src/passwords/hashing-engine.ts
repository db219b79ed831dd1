/**
 * The primary's side of the hashing process (passwords/hashing-process.ts):
 * starts it with the queue's settings and the path of the Unix socket the
 * HTTP workers reach it on, starts a new one if it dies, asks it for the
 * queue's metrics, stops it last. The socket lives in a directory of the
 * instance's own, readable by its user alone.
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { Asker, isAnswer, isNotice, PeerGone, type Send } from '../util/rpc.js'

type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>

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

/** The hashing process's settings, its first argument: the queue's (passwords/hasher.ts, HasherOptions) and where the workers reach it. */
export interface HashingSettings {
  concurrency: number
  depth: number
  maxWaitMs?: number
  /** Added to the instance's nice value for every hashing thread but one. */
  nice: number
  /** HTTP workers sharing the queue: each lets its share of the bound past its shed check. */
  workers: number
  shareAnnounceIntervalMs: number
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Where it listens for the workers; none: it serves the primary's IPC alone. */
  socketPath?: string
}

/**
 * A Unix socket's path holds 107 bytes at most (Linux's sun_path): under a
 * temporary directory too deep for the socket's own name, /tmp instead.
 */
const SOCKET_PATH_ROOM = 100
/**
 * The directory of the workers' socket, the instance's user's alone: under
 * the temporary directory, or /tmp where that one is too deep or cannot be
 * written (a TMPDIR that does not exist, which the rest of a start lets by).
 */
function makeSocketDir (): string {
  const base = tmpdir()
  if (Buffer.byteLength(path.join(base, 'tessera-hashing-XXXXXX', 'hashing.sock')) <= SOCKET_PATH_ROOM) {
    try { return mkdtempSync(path.join(base, 'tessera-hashing-')) } catch {}
  }
  return mkdtempSync(path.join('/tmp', 'tessera-hashing-'))
}

export interface HashingProcessInfo { pid: number, priority: number }

export class HashingProcess {
  readonly #asker = new Asker()
  readonly #settings: HashingSettings
  readonly #logger: Logger
  readonly #inheritedEnv: Readonly<Record<string, string>>
  readonly #socketDir: string
  readonly #socketPath: string
  readonly #onReady: () => void
  readonly #onExit: (incarnation: number) => void
  #child: ChildProcess | undefined
  #incarnation = 0
  #ready: Promise<void>
  #stopping = false

  /**
   * Starts the process; `ready` says when it listens and runs at its
   * priority. `onReady` is told at each start, the first and every restart
   * (the workers connect then); `onExit` when an incarnation exits.
   */
  constructor (settings: Omit<HashingSettings, 'socketPath' | 'logLevel'>, logger: Logger, inheritedEnv: Readonly<Record<string, string>>, events: { onReady: () => void, onExit: (incarnation: number) => void }) {
    this.#socketDir = makeSocketDir()
    this.#socketPath = path.join(this.#socketDir, 'hashing.sock')
    this.#settings = { ...settings, logLevel: logger.level as HashingSettings['logLevel'], socketPath: this.#socketPath }
    this.#logger = logger
    this.#inheritedEnv = inheritedEnv
    this.#onReady = events.onReady
    this.#onExit = events.onExit
    this.#ready = this.#spawn()
  }

  get ready (): Promise<void> { return this.#ready }

  /** Where the workers reach the queue. */
  get socketPath (): string { return this.#socketPath }

  /** The running incarnation, counted from 1; each restart is another, whose counts start from zero. */
  get incarnation (): number { return this.#incarnation }

  /** The queue's metrics, from the running process; rejects when it does not answer within `timeoutMs`. */
  async metrics (timeoutMs: number): Promise<MetricsJson> {
    return await this.#asker.ask<MetricsJson>(this.#send, 'metrics-json', null, timeoutMs)
  }

  async #spawn (): Promise<void> {
    const child = fork(ENTRY, [JSON.stringify(this.#settings)], {
      env: hashingEnv(this.#settings.concurrency, this.#inheritedEnv),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json'
    })
    this.#child = child
    const incarnation = ++this.#incarnation
    const ready = new Promise<HashingProcessInfo>((resolve, reject) => {
      child.once('exit', (code) => reject(new PeerGone(`the hashing process exited with ${String(code)} before it was ready`)))
      child.on('message', (message) => {
        if (isAnswer(message)) this.#asker.settle(message)
        else if (isNotice(message) && message.kind === 'ready') resolve(message.body as HashingProcessInfo)
      })
    })
    child.on('exit', (code, signal) => {
      this.#asker.failAll('the hashing process exited')
      this.#onExit(incarnation)
      if (this.#stopping || this.#child !== child) return
      this.#logger.error({ code, signal }, 'the hashing process exited; starting another')
      setTimeout(() => {
        this.#ready = this.#spawn()
        this.#ready.catch((err: unknown) => this.#logger.error({ err }, 'could not restart the hashing process'))
      }, RESTART_DELAY_MS).unref()
    })
    const info = await ready
    this.#logger.info({ hashing_pid: info.pid, priority: info.priority, concurrency: this.#settings.concurrency }, 'hashing process started')
    this.#onReady()
  }

  readonly #send: Send = (message) => {
    if (this.#child?.connected !== true) throw new PeerGone('the hashing process is not running')
    this.#child.send(message)
  }

  async stop (): Promise<void> {
    this.#stopping = true
    await this.#ready.catch(() => {})
    const child = this.#child
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.disconnect()
      await exited
    }
    rmSync(this.#socketDir, { recursive: true, force: true })
  }
}

/**
 * The instance's one hashing queue, seen from an HTTP worker: each hash or
 * verify is asked of the hashing process directly, over a Unix socket, and
 * its PasswordHasher admits it or refuses it at once. Each worker lets at
 * most its share of the queue's bound past the shed check, and the hashing
 * process announces when the whole queue is full, so a worker sheds a login
 * before touching the database, as a single process does. The primary is not
 * on a login's way: through it, a login cost four more messages and as many
 * wake-ups of a third process, on cores the hashing threads want
 * (docs/decisions.md, "Workers ask the hashing process directly").
 * @module
 */
import { connect, type Socket } from 'node:net'
import type { OAuthError } from '../errors.js'
import { hashingOverloaded, hashingRestarting, type PasswordHashing } from '../passwords/hasher.js'
import { needsRehash } from '../passwords/verify.js'
import { Asker, isAnswer, isNotice, lineChannel, PeerGone, RemoteOverloaded, type Send } from '../util/rpc.js'

interface Connection { socket: Socket, send: Send, asker: Asker }

export class InstanceHashing implements PasswordHashing {
  saturated = false
  /** This worker's share of the instance's queue, as the hashing process last announced it (hashingShare, passwords/hasher.ts). */
  capacity = 1
  readonly #socketPath: string
  #connection: Connection | undefined

  constructor (socketPath: string) {
    this.#socketPath = socketPath
  }

  /**
   * Connects now, if not connected: the hashing process announces the
   * queue's state to each new connection, so a worker knows its share
   * before its first login. Called when the primary says the hashing
   * process is ready; an ask connects by itself otherwise.
   */
  connect (): void {
    this.#connected()
  }

  #connected (): Connection {
    this.#connection ??= this.#open()
    return this.#connection
  }

  #open (): Connection {
    const socket = connect(this.#socketPath)
    const asker = new Asker()
    const send = lineChannel(socket, (message) => {
      if (isAnswer(message)) asker.settle(message)
      else if (isNotice(message) && message.kind === 'hashing-saturated') this.saturated = message.body === true
      else if (isNotice(message) && message.kind === 'hashing-share') this.capacity = message.body as number
    })
    const connection = { socket, send, asker }
    // Refused (the process is starting again) or cut (it died): what was
    // asked never ran, and the next ask connects anew. A full queue said
    // by the process that is gone says nothing of the next one.
    socket.on('error', () => {})
    socket.once('close', () => {
      if (this.#connection === connection) this.#connection = undefined
      this.saturated = false
      asker.failAll('the hashing process is gone')
    })
    return connection
  }

  overloaded (): OAuthError {
    return hashingOverloaded()
  }

  async #asked<T> (kind: string, body: unknown): Promise<T> {
    const connection = this.#connected()
    try {
      return await connection.asker.ask<T>(connection.send, kind, body)
    } catch (err) {
      if (err instanceof RemoteOverloaded) throw this.overloaded()
      if (err instanceof PeerGone) throw hashingRestarting(err)
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

  /** Closes the connection: the worker is done. */
  close (): void {
    this.#connection?.socket.destroy()
  }
}

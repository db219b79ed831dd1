/**
 * Request and answer over a Node IPC channel (a cluster worker and its
 * primary, the primary and its hashing process) or a stream socket (an HTTP
 * worker and the hashing process: lineChannel). Each side answers the kinds
 * it serves; a refusal the asker must turn into its own 503 travels as
 * `overloaded`, anything else as a plain failure without detail.
 * @module
 */
import type { Socket } from 'node:net'
import { TesseraError } from '../errors.js'

export interface Ask { tessera: 'ask', id: number, kind: string, body: unknown }
export interface Answer { tessera: 'answer', id: number, value?: unknown, refused?: 'overloaded' | 'failed' }
/** One-way: nothing answers it. */
export interface Notice { tessera: 'notice', kind: string, body: unknown }
export type Send = (message: Ask | Answer | Notice) => void
export type Handlers = Record<string, (body: never) => Promise<unknown> | unknown>

/** Thrown on the asking side when the other side refused: its queue is full. */
export class RemoteOverloaded extends TesseraError {
  readonly code = 'ERR_REMOTE_OVERLOADED'

  constructor () {
    super('the instance refused: overloaded')
  }
}

/** Thrown on the asking side when the other process is gone (it exited, or is not running yet): the ask was never served. */
export class PeerGone extends TesseraError {
  readonly code = 'ERR_PEER_GONE'
}

export function isAsk (message: unknown): message is Ask {
  return typeof message === 'object' && message !== null && (message as { tessera?: unknown }).tessera === 'ask'
}

export function isNotice (message: unknown): message is Notice {
  return typeof message === 'object' && message !== null && (message as { tessera?: unknown }).tessera === 'notice'
}

export function notice (kind: string, body: unknown = null): Notice {
  return { tessera: 'notice', kind, body }
}

export function isAnswer (message: unknown): message is Answer {
  return typeof message === 'object' && message !== null && (message as { tessera?: unknown }).tessera === 'answer'
}

interface Pending { resolve: (value: unknown) => void, reject: (err: Error) => void, timer: NodeJS.Timeout | undefined }

export class Asker {
  #next = 0
  readonly #pending = new Map<number, Pending>()

  /** Rejects after `timeoutMs` when given; otherwise waits until answered or `failAll`. */
  async ask<T> (send: Send, kind: string, body: unknown = null, timeoutMs?: number): Promise<T> {
    const id = this.#next++
    return await new Promise<T>((resolve, reject) => {
      const timer = timeoutMs === undefined
        ? undefined
        : setTimeout(() => { this.#pending.delete(id); reject(new Error(`no answer to ${kind} within ${timeoutMs} ms`)) }, timeoutMs)
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer })
      try {
        send({ tessera: 'ask', id, kind, body })
      } catch (err) {
        this.#settle(id)?.reject(err as Error)
      }
    })
  }

  #settle (id: number): Pending | undefined {
    const pending = this.#pending.get(id)
    if (pending === undefined) return undefined
    this.#pending.delete(id)
    clearTimeout(pending.timer)
    return pending
  }

  settle (answer: Answer): void {
    const pending = this.#settle(answer.id)
    if (pending === undefined) return
    if (answer.refused === 'overloaded') pending.reject(new RemoteOverloaded())
    else if (answer.refused !== undefined) pending.reject(new Error('the other process failed to answer'))
    else pending.resolve(answer.value)
  }

  /** The other side is gone: nothing pending will be answered. */
  failAll (why: string): void {
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(new PeerGone(why))
  }
}

/**
 * Answers one ask with the handler for its kind. `isOverloaded` tells which
 * errors are the bounded queue's refusal; any other error is reported to
 * `onError` and answered as a plain failure.
 */
export function answer (send: Send, ask: Ask, handlers: Handlers, isOverloaded: (err: unknown) => boolean, onError: (err: unknown, kind: string) => void): void {
  const reply = (fields: Partial<Answer>): void => {
    try { send({ tessera: 'answer', id: ask.id, ...fields }) } catch (err) { onError(err, ask.kind) }
  }
  const handler = handlers[ask.kind]
  if (handler === undefined) {
    onError(new Error(`no handler for ${ask.kind}`), ask.kind)
    reply({ refused: 'failed' })
    return
  }
  Promise.resolve().then(() => handler(ask.body as never)).then(
    (value) => reply({ value }),
    (err: unknown) => {
      if (isOverloaded(err)) {
        reply({ refused: 'overloaded' })
        return
      }
      onError(err, ask.kind)
      reply({ refused: 'failed' })
    })
}

/**
 * The most a line may hold before it ends: far above any message (a
 * password is bounded by the policy), so a peer that sends without end is
 * cut off rather than buffered without bound.
 */
const MAX_LINE_CHARS = 1024 * 1024

/**
 * Messages over a stream socket, one JSON text a line (JSON.stringify
 * escapes every newline a string holds). Each whole message goes to
 * `onMessage`; a line that is not JSON, or too long, ends the connection.
 * Sending on a socket that can no longer be written to throws PeerGone.
 */
export function lineChannel (socket: Socket, onMessage: (message: unknown) => void): Send {
  let buffered = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    buffered += chunk
    for (let end = buffered.indexOf('\n'); end !== -1; end = buffered.indexOf('\n')) {
      const line = buffered.slice(0, end)
      buffered = buffered.slice(end + 1)
      let message: unknown
      try {
        message = JSON.parse(line)
      } catch {
        socket.destroy()
        return
      }
      onMessage(message)
    }
    if (buffered.length > MAX_LINE_CHARS) socket.destroy()
  })
  return (message) => {
    if (socket.destroyed || !socket.writable) throw new PeerGone('the connection is closed')
    socket.write(`${JSON.stringify(message)}\n`)
  }
}

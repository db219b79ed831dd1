/**
 * Request and answer over a Node IPC channel (a cluster worker and its
 * primary, the primary and its hashing process). Each side answers the kinds
 * it serves; a refusal the asker must turn into its own 503 travels as
 * `overloaded`, anything else as a plain failure without detail.
 * @module
 */
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

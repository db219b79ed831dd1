/**
 * Registered clients' rows, kept in an HTTP worker's memory while it hears
 * of every change to them. A client_credentials token is one signature and
 * one client read; the read's round trip cost the worker about a tenth of
 * its time and Postgres a third of a core at full load, for a row that
 * changes when an operator runs a command.
 *
 * A row is served from memory only while the feed is live: the instance's
 * LISTEN on CLIENTS_CHANNEL, which a trigger on `clients` (migrations/0009)
 * notifies on every insert, update, delete and truncate, and which the
 * primary relays to its workers. A change forgets the row; a lost feed
 * forgets every row and reads the database until the feed is back, since
 * notifications sent meanwhile are lost. A read that was in flight when any
 * change or loss was heard is answered but not kept: it may predate the
 * change. So a disable, a deletion or a secret rotation reaches this cache
 * as fast as the notification reaches the instance (a few milliseconds),
 * and a row is never kept longer than CLIENT_CACHE_TTL_MS whatever happens
 * to the feed. Unknown clients are never kept: random ids must not fill
 * memory. docs/decisions.md, "Client rows in the workers' memory".
 * @module
 */
import { performance } from 'node:perf_hooks'
import type { GrantType } from '../db/database.js'

/** The channel the `clients` trigger notifies with the client_id changed, or '*' for a truncate. */
export const CLIENTS_CHANNEL = 'tessera_clients'
/** A client_id is 1–64 of [A-Za-z0-9._-]: this can be no client's. */
export const EVERY_CLIENT = '*'
/** The longest a row is served from memory, even while the feed says nothing. */
export const CLIENT_CACHE_TTL_MS = 5_000
/** Past this many rows, the cache starts over: a deployment has a handful of clients. */
const MAX_ENTRIES = 1_000

/** What authentication needs of a client's row. */
export interface ClientRecord {
  confidential: boolean
  grants: GrantType[]
  scopes: string[]
  resources: string[]
  secretDigest: Buffer | null
  previousSecretDigest: Buffer | null
  /** When the previous secret stops working, in ms since the epoch; null when there is none. */
  previousSecretExpiresMs: number | null
  disabled: boolean
}

/** The feed's state as the primary tells it: `epoch` orders tellings that may arrive out of turn. */
export interface ClientFeedState { live: boolean, epoch: number }

export class ClientCache {
  readonly #entries = new Map<string, { record: ClientRecord, storedAtMs: number }>()
  readonly #nowMs: () => number
  #live = false
  #epoch = -1
  /** Moves on every change and loss heard: a read that began before it may be stale. */
  #generation = 0

  constructor (nowMs: () => number = () => performance.now()) {
    this.#nowMs = nowMs
  }

  get live (): boolean {
    return this.#live
  }

  /** The feed connected (every later change will be heard) or was lost; an older telling than one applied is ignored. */
  feed (state: ClientFeedState): void {
    if (state.epoch <= this.#epoch) return
    this.#epoch = state.epoch
    this.#live = state.live
    this.#forgetAll()
  }

  /** A client's row changed (or every row, EVERY_CLIENT). */
  changed (clientId: string): void {
    if (clientId === EVERY_CLIENT) {
      this.#forgetAll()
      return
    }
    this.#generation++
    this.#entries.delete(clientId)
  }

  /** The client's row from memory when it may be served from there, else from `load`, kept when that is safe. */
  async read (clientId: string, load: (clientId: string) => Promise<ClientRecord | undefined>): Promise<ClientRecord | undefined> {
    if (!this.#live) return await load(clientId)
    const kept = this.#entries.get(clientId)
    if (kept !== undefined && this.#nowMs() - kept.storedAtMs < CLIENT_CACHE_TTL_MS) return kept.record
    const generation = this.#generation
    const startedAtMs = this.#nowMs()
    const record = await load(clientId)
    // A loss heard meanwhile moved the generation too.
    if (record !== undefined && generation === this.#generation) {
      if (this.#entries.size >= MAX_ENTRIES) this.#entries.clear()
      // Aged from when the read began: the row is at least that old.
      this.#entries.set(clientId, { record, storedAtMs: startedAtMs })
    }
    return record
  }

  #forgetAll (): void {
    this.#generation++
    this.#entries.clear()
  }
}

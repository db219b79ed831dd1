/**
 * Postgres's clock, read in this process without a round trip: the time
 * Postgres's clock_timestamp() gave at the last reading, moved on by this
 * process's monotonic clock since. Every time Tessera stores or compares
 * (token and session times, the grace window, key schedules, back-off,
 * cleanup cut-offs, token iat/exp) comes from it, so instances on hosts whose
 * clocks disagree, and the CLI on an operator's machine, all read one clock:
 * Postgres's, which also dates the audit trail and the columns' defaults.
 * With each host's own clock, a refresh on an instance 30 s behind and the
 * racing tab's at one 30 s ahead were a minute apart by the stored times, so
 * the grace window judged the tab a reuse and ended the user's session
 * (docs/decisions.md, "Clocks").
 *
 * The host's own wall clock is read only to report how far it is from
 * Postgres's (`hostOffsetMs`), never to tell the time.
 * @module
 */
import { sql } from 'kysely'
import type { Db } from './database.js'

export interface DatabaseClockOptions {
  /** Milliseconds on a monotonic clock; performance.now by default. */
  monotonicMs?: () => number
  /** The host's wall clock, for hostOffsetMs only; Date.now by default. */
  wallMs?: () => number
}

/**
 * How often a long-lived process reads Postgres's clock again: a monotonic
 * clock paused by a VM's suspension, or slewed by NTP, is set right within
 * this, for one tiny query per process.
 */
export const CLOCK_SYNC_MS = 10_000

/** The most a reading moved back by a sync is held at the last time told: a sync's error is half a round trip, milliseconds. */
export const MAX_HELD_MS = 1000

/** How far the host's clock may be from Postgres's before the instance says so at start. */
export const HOST_OFFSET_WARNING_MS = 1000

export class DatabaseClock {
  readonly #db: Db
  readonly #monotonicMs: () => number
  readonly #wallMs: () => number
  #anchorDbMs = Number.NaN
  #anchorMonotonicMs = 0
  #last = Number.NEGATIVE_INFINITY
  #hostOffsetMs = 0

  private constructor (db: Db, options: DatabaseClockOptions) {
    this.#db = db
    this.#monotonicMs = options.monotonicMs ?? (() => performance.now())
    this.#wallMs = options.wallMs ?? (() => Date.now())
  }

  /**
   * A clock that has read Postgres's once: it tells the time from the start.
   * `firstVia`: a connection for that first reading other than the one it
   * syncs on after (the primary's start, bounded by a statement timeout).
   */
  static async read (db: Db, options: DatabaseClockOptions = {}, firstVia: Db = db): Promise<DatabaseClock> {
    const clock = new DatabaseClock(db, options)
    await clock.sync(firstVia)
    return clock
  }

  /**
   * A clock from another process's reading on this host (the primary's,
   * handed to a worker at boot): it tells the time at once, with no round
   * trip, so a worker forked while the database is out of reach still starts
   * and serves what needs no database (the JWKS); it syncs on `db` after.
   * `hostOffsetMs` is that reading's: this host's wall clock minus Postgres's.
   */
  static fromHostOffset (db: Db, hostOffsetMs: number, options: DatabaseClockOptions = {}): DatabaseClock {
    const clock = new DatabaseClock(db, options)
    clock.#anchorMonotonicMs = clock.#monotonicMs()
    clock.#anchorDbMs = clock.#wallMs() - hostOffsetMs
    clock.#hostOffsetMs = hostOffsetMs
    return clock
  }

  /**
   * Reads Postgres's clock again. The reading is taken to be at the middle of
   * the round trip, so it is off by at most half of it. A monotonic clock runs
   * at the host's pace, within NTP's slew of real time, and may pause while a
   * VM is suspended: a periodic sync (jobs.ts, the CLI's single reading)
   * bounds what either costs.
   */
  async sync (db: Db = this.#db): Promise<void> {
    // Timed with a connection in hand: a wait for the pool, or a new
    // connection's set-up, comes before Postgres reads its clock, and counted
    // in the round trip it put the reading's middle before the read, the
    // clock ahead by half the wait (seconds, on a pool busy after an outage).
    const { rows, sentAt, receivedAt, wallSentAt, wallReceivedAt } = await db.connection().execute(async (conn) => {
      const sentAt = this.#monotonicMs()
      const wallSentAt = this.#wallMs()
      const { rows } = await sql<{ ms: number }>`SELECT extract(epoch FROM clock_timestamp()) * 1000 AS ms`.execute(conn)
      return { rows, sentAt, wallSentAt, receivedAt: this.#monotonicMs(), wallReceivedAt: this.#wallMs() }
    })
    const ms = Number(rows[0]?.ms)
    if (!Number.isFinite(ms)) throw new Error('Postgres returned no clock_timestamp()')
    // A reading is off by up to half its round trip: one slower than MAX_HELD_MS (an event loop
    // busy for seconds) could look like Postgres's clock set back, so it is dropped while an earlier one stands.
    if (!Number.isNaN(this.#anchorDbMs) && receivedAt - sentAt > MAX_HELD_MS) return
    this.#anchorDbMs = ms
    this.#anchorMonotonicMs = (sentAt + receivedAt) / 2
    this.#hostOffsetMs = (wallSentAt + wallReceivedAt) / 2 - ms
  }

  /**
   * Postgres's time now. Never earlier than a time it returned before by up
   * to MAX_HELD_MS: a sync that moves the reading back by its few
   * milliseconds of error would otherwise date a later write before an
   * earlier one. A reading further back is Postgres's clock itself set back
   * (a failover to a host whose clock is behind, an operator's correction),
   * and is taken: held instead, the time would stand still for as long as
   * the step, and with it every expiry and the grace window (a used refresh
   * token presented again would be inside its grace all that while).
   */
  readonly now = (): Date => {
    const read = this.#anchorDbMs + (this.#monotonicMs() - this.#anchorMonotonicMs)
    const ms = read < this.#last && this.#last - read <= MAX_HELD_MS ? this.#last : read
    this.#last = ms
    return new Date(ms)
  }

  /** Syncs every `intervalMs` until the returned function is called; a failed sync keeps the last reading (the database is down: nothing is stored meanwhile). */
  keepSynced (intervalMs: number, onError: (err: unknown) => void): () => void {
    // One reading at a time: a read hung on a silent network would otherwise be joined by another every tick, each holding a connection.
    let reading = false
    const timer = setInterval(() => {
      if (reading) return
      reading = true
      this.sync().catch(onError).finally(() => { reading = false })
    }, intervalMs)
    timer.unref()
    return () => { clearInterval(timer) }
  }

  /** How far the host's wall clock was ahead of Postgres's (negative: behind) at the last sync, in milliseconds. */
  get hostOffsetMs (): number {
    return this.#hostOffsetMs
  }
}

/** "3.2 s ahead of" / "4 min behind": for the start's and the CLI's warning. */
export function describeHostOffset (offsetMs: number): string {
  const seconds = Math.abs(offsetMs) / 1000
  const amount = seconds >= 120 ? `${(seconds / 60).toFixed(1)} min` : `${seconds.toFixed(1)} s`
  return `${amount} ${offsetMs > 0 ? 'ahead of' : 'behind'}`
}

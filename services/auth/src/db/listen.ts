/**
 * How an instance hears of changes within milliseconds: one dedicated
 * connection LISTENing on every channel it is given (a pooled connection
 * would be handed to queries and lose the LISTEN): key changes, client
 * changes. When that connection drops (a database restart, a terminated
 * backend) it reconnects with capped exponential backoff. Notifications sent
 * while it was away are lost, so a listener is told when the connection is
 * lost and when it is listening again, and catches up then.
 *
 * A connection can also go silent without dropping: a failover that leaves
 * the old server's address unanswering, a partition, a frozen host. A LISTEN
 * connection only ever receives, so nothing would notice (TCP keepalive's
 * first probe comes after two hours): every change would be missed until the
 * periodic reload, for hours. So it is asked a trivial question on a timer,
 * and one not answered in time counts as lost.
 *
 * A connection pooler in transaction or statement mode (PgBouncer's
 * pool_mode) hands the LISTEN's server connection to other clients between
 * statements: nothing is heard, and the heartbeat still answers. So the start
 * sends a NOTIFY from a connection of its own and must hear it (confirmDelivery).
 * @module
 */
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { Logger } from 'pino'
import { loggedError } from '../errors.js'
import { postgresClientConfig, tlsReadingClient } from './tls.js'

/** The listener's application_name, so an operator (or a test) can find it in pg_stat_activity. */
/** A listening connection's silence, coded as named-statements.ts codes a query's: out of reach, as pg's own socket timeouts are. */
function unanswered (ms: number): Error {
  return Object.assign(new Error(`the listening connection did not answer within ${ms} ms`), { code: 'ETIMEDOUT' })
}

export const LISTENER_NAME = 'tessera-listener'
const BACKOFF_FIRST_MS = 100
const BACKOFF_MAX_MS = 5000

/** How often the connection is asked whether it still answers, and how long it may take. */
export interface Heartbeat { everyMs: number, answerWithinMs: number }
const HEARTBEAT: Heartbeat = { everyMs: 10_000, answerWithinMs: 5_000 }

export interface ChangeListener {
  close: () => Promise<void>
}

export interface ChangeHandlers {
  /** By channel: called with each notification's payload. */
  channels: Record<string, (payload: string) => void>
  /** Listening on every channel: at the start (`again` false) and after each reconnect. */
  onListening?: (again: boolean) => void
  /** The connection was lost: notifications are missed until onListening. */
  onLost?: () => void
}

export async function listenForChanges (url: string, logger: Logger, handlers: ChangeHandlers, heartbeat = HEARTBEAT): Promise<ChangeListener> {
  const channels = Object.keys(handlers.channels)
  let closed = false
  let client: pg.Client | undefined
  let retry: NodeJS.Timeout | undefined
  let failures = 0
  let connectedBefore = false
  // Checked now, as the start checks it; each connection, a reconnect's too, reads the TLS files again (tlsReadingClient).
  const target = postgresClientConfig(url)
  const Client = tlsReadingClient(url)

  const connectOnce = async (): Promise<void> => {
    // Keepalives as DATABASE_URL says (on unless keepalives=0): the heartbeat finds a silent server either way.
    const candidate = new Client({ connectionTimeoutMillis: 5000, ...target, application_name: LISTENER_NAME })
    let dropped = false
    // Set once listening; a holder, since drop (defined first) stops it.
    const beat: { timer?: NodeJS.Timeout } = {}
    const drop = (err?: unknown): void => {
      if (dropped) return
      dropped = true
      clearInterval(beat.timer)
      if (client === candidate) client = undefined
      candidate.end().catch(() => {})
      if (closed) return
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** failures)
      failures++
      handlers.onLost?.()
      logger.warn({ ...loggedError(err), retry_ms: delay }, 'change listener lost its connection; reconnecting')
      retry = setTimeout(() => { void connectOnce() }, delay)
      retry.unref()
    }
    candidate.on('error', drop)
    candidate.on('end', () => drop())
    candidate.on('notification', (message) => handlers.channels[message.channel]?.(message.payload ?? ''))
    // The LISTENs bounded as the heartbeat is: a server that lets the connection in and then goes silent
    // otherwise held this attempt, and at the start the instance's whole start, for TCP's ~15 minutes.
    // Destroying the socket fails them at once (ending the connection would wait for the silent server).
    let listens: NodeJS.Timeout | undefined
    try {
      await candidate.connect()
      listens = setTimeout(() => { candidate.connection.stream.destroy(unanswered(heartbeat.answerWithinMs)) }, heartbeat.answerWithinMs)
      // Not what keeps a stopping process alive: close() during a silent attempt must not wait for it.
      listens.unref()
      // LISTEN takes no parameters: the name is quoted as an identifier instead.
      for (const channel of channels) await candidate.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
    } catch (err) {
      drop(err)
      return
    } finally {
      clearTimeout(listens)
    }
    if (closed) {
      await candidate.end().catch(() => {})
      return
    }
    client = candidate
    failures = 0
    let beating = false
    beat.timer = setInterval(() => {
      // One beat at a time: the one unanswered already has its deadline, and a second would queue a
      // query behind it on the client, which pg deprecates (an error from pg 9).
      if (beating) return
      beating = true
      const deadline = setTimeout(() => { drop(unanswered(heartbeat.answerWithinMs)) }, heartbeat.answerWithinMs)
      // A failed query also ends the connection, which 'error' or 'end' reports.
      candidate.query('SELECT 1').finally(() => { beating = false; clearTimeout(deadline) }).catch(() => {})
    }, heartbeat.everyMs)
    beat.timer.unref()
    if (connectedBefore) logger.info('change listener reconnected')
    handlers.onListening?.(connectedBefore)
    connectedBefore = true
  }

  await connectOnce()
  // Only when the start's connection listens: one that failed is retried as any lost one is.
  if (client !== undefined) {
    await confirmDelivery(new Client({ ...target, connectionTimeoutMillis: heartbeat.answerWithinMs }), client, heartbeat.answerWithinMs).catch(async (err: unknown) => {
      closed = true
      clearTimeout(retry)
      await client?.end().catch(() => {})
      throw err
    })
  }
  return {
    close: async () => {
      closed = true
      clearTimeout(retry)
      await client?.end().catch(() => {})
    }
  }
}

/** The channel of the start's own NOTIFY: nothing else sends on it. */
const DELIVERY_CHECK_CHANNEL = 'tessera_listen_check'

/** What the start says when its own NOTIFY was not heard. */
export const NOT_DELIVERED = 'the LISTEN connection did not hear a NOTIFY sent from another connection'

/**
 * Sends a NOTIFY from a connection of its own (`sender`, not yet connected;
 * ended here) and waits for `listening` to hear it. Straight to Postgres, or through a pooler in session mode, it
 * arrives within milliseconds of the commit. Through transaction or statement
 * pooling the LISTEN stayed on a server connection the pooler has since handed
 * on (to the sender itself, or idle in its pool), and it never arrives: key
 * and client changes would go unheard until the periodic reload, with nothing
 * logged, so the start is refused instead.
 */
async function confirmDelivery (sender: pg.Client, listening: pg.Client, withinMs: number): Promise<void> {
  const payload = randomUUID()
  let onNotification: (message: pg.Notification) => void = () => {}
  const arrived = new Promise<void>((resolve) => {
    onNotification = (message) => { if (message.channel === DELIVERY_CHECK_CHANNEL && message.payload === payload) resolve() }
  })
  listening.on('notification', onNotification)
  // The whole check bounded as the LISTENs are: a server gone silent meanwhile fails it too.
  let deadline: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => { deadline = setTimeout(() => resolve('late'), withinMs) })
  const check = async (): Promise<void> => {
    await listening.query(`LISTEN ${DELIVERY_CHECK_CHANNEL}`)
    await sender.connect()
    await sender.query('SELECT pg_notify($1, $2)', [DELIVERY_CHECK_CHANNEL, payload])
    await arrived
    await listening.query(`UNLISTEN ${DELIVERY_CHECK_CHANNEL}`)
  }
  try {
    if (await Promise.race([check(), late]) === 'late') {
      throw new Error(`${NOT_DELIVERED} within ${withinMs} ms: a connection pooler in transaction or statement mode is in the way (PgBouncer's pool_mode); Tessera needs session pooling or a direct connection (docs/operators.md, "Behind PgBouncer")`)
    }
  } finally {
    clearTimeout(deadline)
    listening.off('notification', onNotification)
    // Not awaited: on a server gone silent it would wait for TCP.
    sender.end().catch(() => {})
  }
}

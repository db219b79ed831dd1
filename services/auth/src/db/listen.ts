/**
 * How an instance hears of changes within milliseconds: one dedicated
 * connection LISTENing on every channel it is given (a pooled connection
 * would be handed to queries and lose the LISTEN): key changes, client
 * changes. When that connection drops (a database restart, a terminated
 * backend) it reconnects with capped exponential backoff. Notifications sent
 * while it was away are lost, so a listener is told when the connection is
 * lost and when it is listening again, and catches up then.
 * @module
 */
import pg from 'pg'
import type { Logger } from 'pino'

/** The listener's application_name, so an operator (or a test) can find it in pg_stat_activity. */
export const LISTENER_NAME = 'tessera-listener'
const BACKOFF_FIRST_MS = 100
const BACKOFF_MAX_MS = 5000

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

export async function listenForChanges (url: string, logger: Logger, handlers: ChangeHandlers): Promise<ChangeListener> {
  const channels = Object.keys(handlers.channels)
  let closed = false
  let client: pg.Client | undefined
  let retry: NodeJS.Timeout | undefined
  let failures = 0
  let connectedBefore = false

  const connectOnce = async (): Promise<void> => {
    const candidate = new pg.Client({ connectionString: url, application_name: LISTENER_NAME, keepAlive: true, connectionTimeoutMillis: 5000 })
    let dropped = false
    const drop = (err?: unknown): void => {
      if (dropped) return
      dropped = true
      if (client === candidate) client = undefined
      candidate.end().catch(() => {})
      if (closed) return
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** failures)
      failures++
      handlers.onLost?.()
      logger.warn({ err, retry_ms: delay }, 'change listener lost its connection; reconnecting')
      retry = setTimeout(() => { void connectOnce() }, delay)
      retry.unref()
    }
    candidate.on('error', drop)
    candidate.on('end', () => drop())
    candidate.on('notification', (message) => handlers.channels[message.channel]?.(message.payload ?? ''))
    try {
      await candidate.connect()
      // LISTEN takes no parameters: the name is quoted as an identifier instead.
      for (const channel of channels) await candidate.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
    } catch (err) {
      drop(err)
      return
    }
    if (closed) {
      await candidate.end().catch(() => {})
      return
    }
    client = candidate
    failures = 0
    if (connectedBefore) logger.info('change listener reconnected')
    handlers.onListening?.(connectedBefore)
    connectedBefore = true
  }

  await connectOnce()
  return {
    close: async () => {
      closed = true
      clearTimeout(retry)
      await client?.end().catch(() => {})
    }
  }
}

/**
 * How an instance hears of key changes within a second: a dedicated
 * connection LISTENing on KEYS_CHANNEL (a pooled connection would be handed
 * to queries and lose the LISTEN). When that connection drops (a database
 * restart, a terminated backend) it reconnects with capped exponential
 * backoff, and reports a change on reconnecting, since NOTIFYs sent while it
 * was away are lost.
 * @module
 */
import pg from 'pg'
import type { Logger } from 'pino'
import { KEYS_CHANNEL } from './transitions.js'

/** The listener's application_name, so an operator (or a test) can find it in pg_stat_activity. */
export const LISTENER_NAME = 'tessera-key-listener'
const BACKOFF_FIRST_MS = 100
const BACKOFF_MAX_MS = 5000

export interface KeyListener {
  close: () => Promise<void>
}

export async function listenForKeyChanges (url: string, logger: Logger, onChange: (reason: string) => void, onLost: () => void = () => {}): Promise<KeyListener> {
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
      onLost()
      logger.warn({ err, retry_ms: delay }, 'key change listener lost its connection; reconnecting')
      retry = setTimeout(() => { void connectOnce() }, delay)
      retry.unref()
    }
    candidate.on('error', drop)
    candidate.on('end', () => drop())
    candidate.on('notification', (message) => onChange(message.payload ?? ''))
    try {
      await candidate.connect()
      await candidate.query(`LISTEN ${KEYS_CHANNEL}`)
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
    if (connectedBefore) {
      logger.info('key change listener reconnected')
      onChange('listener reconnected')
    }
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

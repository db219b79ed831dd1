/**
 * Named (prepared) statements for the hottest queries. Kysely hands the
 * driver only a statement's text and parameters, and node-pg sends a text
 * without a name as an unnamed statement, which Postgres parses and plans on
 * every call. A text registered here is sent with its name instead: each
 * connection parses and plans it once and afterwards only binds and executes
 * it. Why this way rather than the pool directly, and why a function called
 * this way must never change its result columns in place: docs/decisions.md,
 * "Postgres's share of a refresh".
 * @module
 */
import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely'
import type pg from 'pg'

const namesByText = new Map<string, string>()

/**
 * Registers `text` to be sent as the prepared statement `name` and returns
 * the text, for the caller to run through Kysely as usual. A fixed text only:
 * Postgres keeps one statement per name and connection.
 */
export function namedStatement (name: string, text: string): string {
  const taken = [...namesByText].find(([otherText, otherName]) => otherName === name && otherText !== text)
  if (taken !== undefined) throw new Error(`the statement name ${name} is already taken by another text`)
  namesByText.set(text, name)
  return text
}

/**
 * Drops the client's connection when `answer` has not arrived within
 * `answerWithinMs` (0: never): pg rejects every statement of the client in
 * flight with the error `onCut` is told of (ETIMEDOUT, the database out of
 * reach), and marks the client unusable. Why: namingPool's `answerWithinMs`.
 */
export function cutUnanswered (client: pg.ClientBase, answer: Promise<unknown>, answerWithinMs: number, onCut?: (error: Error) => void): void {
  if (answerWithinMs <= 0) return
  const deadline = setTimeout(() => {
    const error = Object.assign(new Error(`the database did not answer within ${answerWithinMs} ms`), { code: 'ETIMEDOUT' })
    onCut?.(error)
    ;(client as pg.PoolClient).connection.stream.destroy(error)
  }, answerWithinMs)
  const done = (): void => { clearTimeout(deadline) }
  answer.then(done, done)
}

/**
 * A pg.Pool as Kysely's PostgresDialect sees it, whose clients send the
 * registered texts by name. One wrapper per pg client, so Kysely's per-client
 * connection cache keeps working.
 *
 * With `answerWithinMs`, a statement whose answer has not arrived by then
 * drops its connection: the statement fails as the database out of reach
 * (503), and the pool discards the connection on release. Postgres's
 * statement_timeout cannot end that wait, since it is the server that has
 * gone silent (a failover that left the old address unanswering, a network
 * partition, a frozen host); TCP alone would wait out its retransmissions,
 * about 15 minutes on Linux, holding the request and its pool slot. What
 * else is sent on a connection so cut (a transaction's rollback, a lock's
 * release in a `finally`) fails with the same error: pg's own ("not
 * queryable") would be the one thrown, saying neither that the database is
 * out of reach nor why, and a request would be a 500.
 */
export function namingPool (pool: pg.Pool, answerWithinMs = 0): PostgresPool {
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>()
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    let cut: Error | undefined
    // Once per connection, not per statement: this is every request's path.
    const onCut = (error: Error): void => { cut = error }
    function query (textOrCursor: string | PostgresCursor<unknown>, parameters?: readonly unknown[]): Promise<PostgresQueryResult<unknown>> | PostgresCursor<unknown> {
      // A cursor (Kysely's streaming) goes through untouched: it is returned, not awaited.
      if (typeof textOrCursor !== 'string') return client.query(textOrCursor as unknown as pg.Submittable) as unknown as PostgresCursor<unknown>
      if (cut !== undefined) return Promise.reject(cut)
      const name = namesByText.get(textOrCursor)
      const values = parameters === undefined ? undefined : [...parameters]
      const answer = client.query(name === undefined ? { text: textOrCursor, values } : { name, text: textOrCursor, values }) as unknown as Promise<PostgresQueryResult<unknown>>
      cutUnanswered(client, answer, answerWithinMs, onCut)
      return answer
    }
    return {
      // Undocumented in pg's types; Kysely reads it to cancel a query, else asks the server.
      processID: (client as unknown as { processID?: number }).processID,
      query: query as PostgresPoolClient['query'],
      release: (destroy?: boolean) => { client.release(destroy) }
    }
  }
  return {
    Client: (pool as unknown as { Client: PostgresPool['Client'] }).Client,
    options: pool.options,
    connect: async () => {
      const client = await pool.connect()
      let wrapper = wrappers.get(client)
      if (wrapper === undefined) {
        wrapper = wrap(client)
        wrappers.set(client, wrapper)
      }
      return wrapper
    },
    end: async () => { await pool.end() }
  }
}

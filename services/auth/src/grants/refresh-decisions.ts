/**
 * The refresh grant's database work: tessera_refresh_grant decides one
 * refresh in one round trip (migrations/0016), tessera_refresh_grants
 * decides several in one call and one transaction, each exactly as alone
 * (migrations/0018). RefreshDecisions sends a process's concurrent refreshes
 * together: at most LANES calls at once, and what arrives meanwhile waits for
 * the next call, so a quiet process sends each refresh at once and a busy one
 * pays Postgres's fixed cost per call (the round trip, the commit and its
 * flush, the wake-ups) once per group instead of once per refresh. Why and
 * what it measured: docs/decisions.md, "Refreshes decided together".
 * @module
 */
import { CompiledQuery } from 'kysely'
import type { Db } from '../db/database.js'
import { namedStatement } from '../db/named-statements.js'
import type { RequestContext } from '../audit/record.js'
import type { RefreshClaims } from '../tokens/verify-refresh.js'

/** One row of tessera_refresh_grant: a decision, and for rotated and grace the successor to sign. */
export interface RefreshDecisionRow {
  decision: string
  successor_jti: string | null
  successor_kid: string | null
  successor_issued_at: Date | null
  successor_expires_at: Date | null
  session_client_id: string | null
  session_scope: string | null
}

export interface RefreshDecisionInput {
  claims: Pick<RefreshClaims, 'jti' | 'sid' | 'sub'>
  /** The scopes asked for, or undefined to keep the session's. */
  wantedScope: string[] | undefined
  now: Date
  graceSeconds: number
  ttlSeconds: number
  /** The successor's jti and kid, used only when the decision is 'rotated'. */
  successorJti: string
  successorKid: string
  /** The client presenting the token, authenticated by the function; a session of another client is refused before any write, or is reuse when its token is used and past the grace. Absent: not checked. */
  presentingClient?: string
  /** SHA-256 of the secret the client presented; absent for a public client (method none). */
  presentedSecretDigest?: Buffer
  /** The resource asked for; it must be one of the session's (RFC 8707). */
  resource?: string
  context: RequestContext
}

/**
 * The texts are fixed, so nothing is compiled per refresh, and named, so each
 * connection parses and plans them once (db/named-statements.ts);
 * bench/lib/ceilings.mjs hands the same texts to pgbench.
 */
export const REFRESH_GRANT_SQL = namedStatement('tessera_refresh_grant',
  'select * from tessera_refresh_grant($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)')
export const REFRESH_GRANTS_SQL = namedStatement('tessera_refresh_grants',
  'select * from tessera_refresh_grants($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)')

/** The group's answer for a decision whose session another transaction holds: it is decided alone, waiting for the lock as any refresh did. */
export const SESSION_LOCKED = 'session locked'

function decisionParameters (input: RefreshDecisionInput): unknown[] {
  const { claims, context } = input
  return [
    claims.jti, claims.sid, claims.sub, input.now, input.graceSeconds, input.wantedScope ?? null,
    input.successorJti, input.successorKid, input.ttlSeconds, context.ip ?? null, context.userAgent?.slice(0, 512) ?? null,
    input.presentingClient ?? null, input.presentedSecretDigest ?? null, input.resource ?? null
  ]
}

/** One decision: one statement, its own transaction. */
export async function refreshDecision (db: Db, input: RefreshDecisionInput): Promise<RefreshDecisionRow> {
  const result = await db.executeQuery<RefreshDecisionRow>(CompiledQuery.raw(REFRESH_GRANT_SQL, decisionParameters(input)))
  const row = result.rows[0]
  if (row === undefined) throw new Error('tessera_refresh_grant returned no row')
  return row
}

/**
 * Several decisions in one statement and one transaction, in the order
 * given; a decision whose session another transaction holds answers
 * SESSION_LOCKED, having written nothing. The grace and the lifetime are the
 * process's settings, the same for every refresh; a wanted scope goes as its
 * space-separated text (scope tokens hold no space, RFC 6749 §3.3).
 */
export async function refreshDecisionsTogether (db: Db, inputs: readonly RefreshDecisionInput[]): Promise<RefreshDecisionRow[]> {
  const first = inputs[0]
  if (first === undefined) return []
  if (inputs.some((input) => input.graceSeconds !== first.graceSeconds || input.ttlSeconds !== first.ttlSeconds)) {
    throw new Error('refresh decisions taken together share their grace and lifetime')
  }
  const rows = inputs.map(decisionParameters)
  const column = (i: number): unknown[] => rows.map((parameters) => parameters[i])
  const scopes = inputs.map((input) => input.wantedScope?.join(' ') ?? null)
  const result = await db.executeQuery<RefreshDecisionRow & { item: number }>(CompiledQuery.raw(REFRESH_GRANTS_SQL, [
    column(0), column(1), column(2), column(3), first.graceSeconds, scopes,
    column(6), column(7), first.ttlSeconds, column(9), column(10), column(11), column(12), column(13)
  ]))
  const byItem = new Map(result.rows.map(({ item, ...row }) => [item, row]))
  return inputs.map((_, i) => {
    const row = byItem.get(i + 1)
    if (row === undefined) throw new Error('tessera_refresh_grants returned no row for a decision')
    return row
  })
}

/**
 * Postgres refused the call for something in it: a value (SQLSTATE class
 * 22), a constraint (23), a conflict it rolled back (40), the statement
 * itself (42: a function missing, as after `migrate down` under a running
 * build). Taken alone, each decision fares as it would have.
 */
function decidedAlone (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^(22|23|40|42)[0-9A-Z]{3}$/.test(code)
}

interface WaitingDecision {
  input: RefreshDecisionInput
  resolve: (row: RefreshDecisionRow) => void
  reject: (err: unknown) => void
}

/**
 * Calls in flight at once. Measured on two cores (docs/decisions.md,
 * "Refreshes decided together"): one or two per process gave the same
 * rate, four kept about half of the gain. Two, so a call waiting on its
 * commit's flush does not hold every refresh of the process.
 */
const LANES = 2
/** Decisions in one call at most: a worker's share of 64 connections on two workers. */
const MOST_TOGETHER = 32

/** A process's refresh decisions, sent together while earlier ones are in flight. */
export class RefreshDecisions {
  readonly #db: Db
  readonly #waiting: WaitingDecision[] = []
  readonly #callListeners: Array<(decisions: number) => void> = []
  #running = 0

  constructor (db: Db) {
    this.#db = db
  }

  async decide (input: RefreshDecisionInput): Promise<RefreshDecisionRow> {
    return await new Promise((resolve, reject) => {
      this.#waiting.push({ input, resolve, reject })
      if (this.#running < LANES) this.#sendNext()
    })
  }

  /**
   * Told, for each call sent to Postgres, how many decisions it carried: the
   * group's size for a call of tessera_refresh_grants, 1 for a decision taken
   * alone (the metrics' histogram: how much the grouping saves).
   */
  observeCalls (listener: (decisions: number) => void): void {
    this.#callListeners.push(listener)
  }

  #called (decisions: number): void {
    for (const listener of this.#callListeners) listener(decisions)
  }

  #sendNext (): void {
    const group = this.#waiting.splice(0, MOST_TOGETHER)
    this.#running++
    void this.#decide(group).finally(() => {
      this.#running--
      if (this.#waiting.length > 0) this.#sendNext()
    })
  }

  /**
   * A decision whose session is held elsewhere waits for it alone, outside
   * the lanes, so one held session never stalls the process's other
   * refreshes. A call refused for what one of its values is (decidedAlone)
   * wrote nothing, being one transaction: each of its decisions is taken
   * again alone, so one refresh's failure is never another's. Any other
   * failure (the database out of reach or over its statement timeout) is
   * every decision's and is not sent again, so a database that could not
   * answer one call is not sent many: a refresh whose call committed before
   * its answer was lost gets its successor from the grace window when its
   * client tries again, as before.
   */
  async #decide (group: WaitingDecision[]): Promise<void> {
    const alone = (waiting: WaitingDecision): void => {
      this.#called(1)
      refreshDecision(this.#db, waiting.input).then(waiting.resolve, waiting.reject)
    }
    let rows: RefreshDecisionRow[]
    this.#called(group.length)
    try {
      rows = await refreshDecisionsTogether(this.#db, group.map(({ input }) => input))
    } catch (err) {
      const again = decidedAlone(err)
      for (const waiting of group) {
        if (again) alone(waiting)
        else waiting.reject(err)
      }
      return
    }
    for (const [i, waiting] of group.entries()) {
      const row = rows[i]
      if (row !== undefined && row.decision !== SESSION_LOCKED) waiting.resolve(row)
      else alone(waiting)
    }
  }
}

/**
 * Prometheus metrics, on a registry of the app's own (tests build many apps
 * in one process; the global registry would collide). Every label splits one
 * kind of thing, so sum() over a metric is always meaningful; every gauge says
 * how workers' values combine (`aggregator`). In a served instance every
 * process has a registry, and a scrape renders the whole instance's
 * (cluster/instance-metrics.ts, prom-client's AggregatorRegistry).
 * @module
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type pg from 'pg'
import type { GrantType } from '../db/database.js'
import type { Keyring } from '../keys/keyring.js'
import type { RefreshDecisions } from '../grants/refresh-decisions.js'
import type { PasswordHasher } from '../passwords/hasher.js'
import { registerHashingMetrics } from '../passwords/hashing-metrics.js'
import { VERSION } from '../version.js'

const LOGIN_OUTCOMES = ['ok', 'failed', 'backed_off', 'shed', 'unavailable'] as const
const REFRESH_OUTCOMES = ['rotated', 'grace', 'reuse', 'refused', 'unavailable'] as const
const BACKGROUND_JOBS = ['key_rotation', 'keyring_reload', 'key_listener', 'cleanup'] as const
const CLEANUP_KINDS = ['sessions', 'refresh_tokens', 'audit_events', 'login_throttle'] as const
/**
 * The instance's connection pools: `main`, each process's own (an HTTP
 * worker's requests; the primary's start-up), `key`, the primary's key
 * reloads and lifecycle steps (jobs.ts, cluster/pool.ts's KEY_POOL), and `cleanup`, the
 * primary's one connection for the periodic cleanup. Summed over them, the
 * gauges are every pooled connection the instance holds.
 */
export type PoolName = 'main' | 'key' | 'cleanup'
export type LoginOutcome = typeof LOGIN_OUTCOMES[number]
export type RefreshOutcome = typeof REFRESH_OUTCOMES[number]
export type BackgroundJob = typeof BACKGROUND_JOBS[number]
export type CleanupKind = typeof CLEANUP_KINDS[number]

export interface Metrics {
  registry: Registry
  /** The text a scrape answers with. */
  render: () => Promise<string>
  observeRequest: (method: string, route: string, status: number, seconds: number) => void
  login: (outcome: LoginOutcome) => void
  rateLimited: (route: string) => void
  refreshed: (outcome: RefreshOutcome) => void
  revoked: () => void
  tokenIssued: (grantType: GrantType) => void
  /** A background run failed (`key_listener`: the LISTEN connection was lost and is being re-established). */
  jobFailed: (job: BackgroundJob) => void
  /** Rows the periodic cleanup deleted (the primary's job; `tessera cleanup` counts in no instance). */
  cleanedUp: (kind: CleanupKind, rows: number) => void
  /** Counts `pool`'s connections in the tessera_db_pool_* gauges from now on, as `pool="name"`. */
  countPool: (name: PoolName, pool: pg.Pool) => void
}

export interface MetricsSources {
  hasher?: PasswordHasher
  /** The process's refresh decisions: how many go to Postgres in each call. */
  refreshDecisions?: Pick<RefreshDecisions, 'observeCalls'>
  keyring?: Keyring
  /** The process's `main` pool. */
  pool?: pg.Pool
  /** TESSERA_KEY_ROTATION in seconds (null: off), for the time until the next rotation. */
  keyRotation?: number | null
  /** TESSERA_KEY_PUBLISH_LEAD in seconds: a pending `next` key signs this long after it was published. */
  keyPublishLead?: number
  clock?: () => Date
  processMetrics?: boolean
  /** The process's log lines its stdout could not take (logging.ts, createProcessLogger); none when absent. */
  droppedLogLines?: () => number
  /** Renders something wider than this registry, e.g. the whole instance. */
  render?: () => Promise<string>
}

export function createMetrics (sources: MetricsSources = {}): Metrics {
  const registry = new Registry()
  if (sources.processMetrics !== false) collectDefaultMetrics({ register: registry })
  const duration = new Histogram({
    name: 'tessera_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry]
  })
  const logins = new Counter({ name: 'tessera_logins_total', help: 'Password grant attempts by outcome', labelNames: ['outcome'], registers: [registry] })
  const refreshes = new Counter({ name: 'tessera_refreshes_total', help: 'Refresh grant attempts by outcome', labelNames: ['outcome'], registers: [registry] })
  const revocations = new Counter({ name: 'tessera_revocations_total', help: 'Sessions ended by revoking one of their tokens: /oauth/revoke (a refresh or an access token), and the SimpleJWT blacklist/ route', registers: [registry] })
  // Not by signing key: a kid label would add series with every rotation for as long as the
  // instance runs. An instance signing with an old key shows in its signing key's age
  // (tessera_signing_key_age_seconds) growing past the rotation; `tessera keys list` names the kid.
  const issued = new Counter({ name: 'tessera_tokens_issued_total', help: 'Access tokens issued by grant type', labelNames: ['grant_type'], registers: [registry] })
  const limited = new Counter({ name: 'tessera_rate_limited_total', help: 'Requests refused by the per-IP limit, by route', labelNames: ['route'], registers: [registry] })
  const failures = new Counter({ name: 'tessera_background_job_failures_total', help: 'Failed background runs by job (key_rotation, keyring_reload, key_listener: LISTEN connection lost, cleanup)', labelNames: ['job'], registers: [registry] })
  // Every outcome shows from the start (at 0), so rate() works before the first event.
  for (const outcome of LOGIN_OUTCOMES) logins.inc({ outcome }, 0)
  for (const outcome of REFRESH_OUTCOMES) refreshes.inc({ outcome }, 0)
  const cleaned = new Counter({ name: 'tessera_cleanup_deleted_total', help: 'Rows the periodic cleanup deleted, by kind (sessions, refresh_tokens, audit_events, login_throttle)', labelNames: ['kind'], registers: [registry] })
  for (const job of BACKGROUND_JOBS) failures.inc({ job }, 0)
  const droppedLogLines = sources.droppedLogLines ?? (() => 0)
  // Read at each scrape from the process's logger, which exists before any registry and counts from its start.
  registry.registerMetric(new Counter({ name: 'tessera_log_lines_dropped_total', help: 'Log lines dropped because stdout was not read while its buffer was full (a stalled log reader)', registers: [], collect () { this.reset(); this.inc(droppedLogLines()) } }))
  for (const kind of CLEANUP_KINDS) cleaned.inc({ kind }, 0)
  const gauge = (name: string, help: string, aggregator: 'sum' | 'max' | 'min' | 'first', collect: (set: (value: number) => void) => void): void => {
    registry.registerMetric(new Gauge({ name, help, aggregator, registers: [], collect () { this.reset(); collect((value) => this.set(value)) } }))
  }
  const buildInfo = new Gauge({ name: 'tessera_build_info', help: 'Always 1; the labels say what is running', labelNames: ['version', 'node_version'], aggregator: 'first', registers: [registry] })
  buildInfo.set({ version: VERSION, node_version: process.version }, 1)

  const { hasher, keyring, pool } = sources
  const clock = sources.clock ?? (() => new Date())
  if (hasher !== undefined) registerHashingMetrics(registry, hasher)
  if (sources.refreshDecisions !== undefined) {
    const perCall = new Histogram({
      name: 'tessera_refresh_decisions_per_call',
      help: 'Refresh decisions sent to Postgres in one call: those that arrived while the process\'s earlier calls were in flight go together, up to 32; 1 for a refresh decided alone',
      buckets: [1, 2, 4, 8, 16, 32],
      registers: [registry]
    })
    sources.refreshDecisions.observeCalls((decisions) => perCall.observe(decisions))
  }
  if (keyring !== undefined) {
    registry.registerMetric(new Gauge({
      name: 'tessera_signing_keys',
      help: 'Signing keys loaded, by state',
      labelNames: ['state'],
      aggregator: 'max',
      registers: [],
      collect () {
        this.reset()
        for (const key of keyring.keys) this.inc({ state: key.state })
      }
    }))
    // What this instance signs with, not what the database calls current: after a
    // `keys rewrap`, a key made under the new KEK is current but cannot be opened
    // by an instance still on the old one, which answers logins 503.
    gauge('tessera_signing_key_loaded', 'Whether this instance holds the current key\'s private half and so can sign (0: logins and refreshes answer 503; a key sealed under another KEK, restart with the new TESSERA_KEK)', 'min', (set) => {
      set(keyring.signer === undefined ? 0 : 1)
    })
    const signingSince = (): Date | undefined => keyring.keys.find((k) => k.state === 'current')?.promotedAt ?? undefined
    gauge('tessera_signing_key_age_seconds', 'How long the key this instance signs with has signed (0 while it signs with none)', 'max', (set) => {
      const signer = keyring.signer
      const since = signer === undefined ? undefined : keyring.get(signer.kid)?.promotedAt
      if (since !== undefined && since !== null) set((clock().getTime() - since.getTime()) / 1000)
    })
    const rotation = sources.keyRotation
    if (rotation !== undefined && rotation !== null) {
      const lead = sources.keyPublishLead ?? 0
      gauge('tessera_signing_key_next_rotation_seconds', 'Seconds until the next key starts signing: a pending next key, else the schedule\'s (negative: overdue; 0 while none signs)', 'min', (set) => {
        const since = signingSince()
        if (since === undefined) return
        // As keys/advance.ts decides: a pending next key (the schedule's, or
        // one made by hand) signs once published for the lead, whatever the
        // period says; without one, the schedule makes one a lead before the
        // period ends, or at once when the period is shorter than the lead.
        const pending = keyring.keys.find((k) => k.state === 'next')
        const signsAt = pending === undefined
          ? since.getTime() + Math.max(rotation, lead) * 1000
          : pending.publishedAt.getTime() + lead * 1000
        set((signsAt - clock().getTime()) / 1000)
      })
    }
  }
  const pools = new Map<PoolName, pg.Pool>()
  const poolGauge = (name: string, help: string, read: (pool: pg.Pool) => number): void => {
    registry.registerMetric(new Gauge({
      name,
      help,
      labelNames: ['pool'],
      aggregator: 'sum',
      registers: [],
      collect () {
        this.reset()
        for (const [label, counted] of pools) this.set({ pool: label }, read(counted))
      }
    }))
  }
  // Registered with the first pool: a registry with none (a test's) has no pool gauges, as before.
  const countPool = (name: PoolName, counted: pg.Pool): void => {
    if (pools.size === 0) {
      poolGauge('tessera_db_pool_connections', 'Open database pool connections, busy or idle, by pool', (p) => p.totalCount)
      poolGauge('tessera_db_pool_idle_connections', 'Open database pool connections not in use, by pool', (p) => p.idleCount)
      poolGauge('tessera_db_pool_waiting_clients', 'Queries waiting for a pool connection, by pool', (p) => p.waitingCount)
    }
    pools.set(name, counted)
  }
  if (pool !== undefined) countPool('main', pool)
  // One labels object per method, route and status, made once: the request histogram is observed on every request.
  const requestLabels = new Map<string, Map<string, Map<number, { method: string, route: string, status: string }>>>()
  const labelsOf = (method: string, route: string, status: number): { method: string, route: string, status: string } => {
    let byRoute = requestLabels.get(method)
    if (byRoute === undefined) requestLabels.set(method, byRoute = new Map())
    let byStatus = byRoute.get(route)
    if (byStatus === undefined) byRoute.set(route, byStatus = new Map())
    let labels = byStatus.get(status)
    if (labels === undefined) byStatus.set(status, labels = { method, route, status: String(status) })
    return labels
  }
  return {
    registry,
    render: sources.render ?? (async () => await registry.metrics()),
    observeRequest: (method, route, status, seconds) => duration.observe(labelsOf(method, route, status), seconds),
    login: (outcome) => logins.inc({ outcome }),
    rateLimited: (route) => limited.inc({ route }),
    refreshed: (outcome) => refreshes.inc({ outcome }),
    revoked: () => revocations.inc(),
    tokenIssued: (grantType) => issued.inc({ grant_type: grantType }),
    jobFailed: (job) => failures.inc({ job }),
    cleanedUp: (kind, rows) => cleaned.inc({ kind }, rows),
    countPool
  }
}

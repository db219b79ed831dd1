/**
 * Prometheus metrics, on a registry of the app's own (tests build many apps
 * in one process; the global registry would collide).
 * @module
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type pg from 'pg'
import type { GrantType } from '../db/database.js'
import type { Keyring } from '../keys/keyring.js'
import type { PasswordHasher } from '../passwords/hasher.js'

const LOGIN_OUTCOMES = ['ok', 'failed', 'backed_off', 'shed'] as const
const REFRESH_OUTCOMES = ['rotated', 'grace', 'reuse', 'refused'] as const
export type LoginOutcome = typeof LOGIN_OUTCOMES[number]
export type RefreshOutcome = typeof REFRESH_OUTCOMES[number]

export interface Metrics {
  registry: Registry
  observeRequest: (method: string, route: string, status: number, seconds: number) => void
  login: (outcome: LoginOutcome) => void
  rateLimited: (route: string) => void
  refreshed: (outcome: RefreshOutcome) => void
  revoked: () => void
  tokenIssued: (kid: string, grantType: GrantType) => void
}

export interface MetricsSources {
  hasher?: PasswordHasher
  keyring?: Keyring
  pool?: pg.Pool
  processMetrics?: boolean
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
  const revocations = new Counter({ name: 'tessera_revocations_total', help: 'Sessions ended through /oauth/revoke', registers: [registry] })
  const issued = new Counter({ name: 'tessera_tokens_issued_total', help: 'Access tokens issued by grant type and signing kid', labelNames: ['grant_type', 'kid'], registers: [registry] })
  const limited = new Counter({ name: 'tessera_rate_limited_total', help: 'Requests refused by the per-IP limit, by route', labelNames: ['route'], registers: [registry] })
  // Every outcome shows from the start (at 0), so rate() works before the first event.
  for (const outcome of LOGIN_OUTCOMES) logins.inc({ outcome }, 0)
  for (const outcome of REFRESH_OUTCOMES) refreshes.inc({ outcome }, 0)
  const { hasher, keyring, pool } = sources
  if (hasher !== undefined) {
    registry.registerMetric(new Gauge({ name: 'tessera_hash_queue_waiting', help: 'Password hashes waiting for a slot', registers: [], collect () { this.set(hasher.waiting) } }))
    registry.registerMetric(new Gauge({ name: 'tessera_hash_in_flight', help: 'Password hashes running', registers: [], collect () { this.set(hasher.inFlight) } }))
  }
  if (keyring !== undefined) {
    registry.registerMetric(new Gauge({
      name: 'tessera_signing_keys',
      help: 'Signing keys loaded, by state',
      labelNames: ['state'],
      registers: [],
      collect () {
        this.reset()
        for (const key of keyring.keys) this.inc({ state: key.state })
      }
    }))
  }
  if (pool !== undefined) {
    registry.registerMetric(new Gauge({
      name: 'tessera_db_pool_connections',
      help: 'Database pool connections by state',
      labelNames: ['state'],
      registers: [],
      collect () {
        this.set({ state: 'total' }, pool.totalCount)
        this.set({ state: 'idle' }, pool.idleCount)
        this.set({ state: 'waiting' }, pool.waitingCount)
      }
    }))
  }
  return {
    registry,
    observeRequest: (method, route, status, seconds) => duration.observe({ method, route, status: String(status) }, seconds),
    login: (outcome) => logins.inc({ outcome }),
    rateLimited: (route) => limited.inc({ route }),
    refreshed: (outcome) => refreshes.inc({ outcome }),
    revoked: () => revocations.inc(),
    tokenIssued: (kid, grantType) => issued.inc({ grant_type: grantType, kid })
  }
}

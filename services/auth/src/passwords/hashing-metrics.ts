/**
 * The hashing queue's metrics, in the registry of the process that holds the
 * queue (in passwords/ beside it, so the hashing process needs nothing of
 * metrics/: metrics.ts calls this for the CLI's and in-process tests' one process).
 * @module
 */
import { Gauge, Histogram, type Registry } from 'prom-client'
import type { PasswordHasher } from './hasher.js'

/**
 * The hashing queue's gauges and wait histogram, in the registry of the
 * process that holds the queue: the hashing process of a served instance
 * (passwords/hashing-process.ts), whose registry the primary merges into
 * the instance's scrape; the one process of the CLI and in-process tests.
 */
export function registerHashingMetrics (registry: Registry, hasher: PasswordHasher): void {
  const gauge = (name: string, help: string, read: () => number): void => {
    registry.registerMetric(new Gauge({ name, help, aggregator: 'sum', registers: [], collect () { this.set(read()) } }))
  }
  gauge('tessera_hash_queue_waiting', 'Password hashes waiting for a slot', () => hasher.waiting)
  gauge('tessera_hash_in_flight', 'Password hashes running', () => hasher.inFlight)
  gauge('tessera_hash_rate', 'Password hashes per second the hashing threads finish with their cores: threads / the measured CPU cost of a hash (an assumed cost until measured)', () => hasher.rate)
  const waits = new Histogram({
    name: 'tessera_hash_queue_wait_seconds',
    help: 'How long each started password hash waited for its slot',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5],
    registers: [registry]
  })
  hasher.observeWaits((seconds) => waits.observe(seconds))
}

/**
 * One scrape shows the whole instance: the worker that takes the scrape asks
 * the primary, which gathers every worker's registry and its own (the hashing
 * queue, the signing keys, its pool) and merges them with prom-client's
 * AggregatorRegistry (counters and histograms summed; each metric's own
 * aggregator otherwise).
 * @module
 */
import { AggregatorRegistry, type Registry } from 'prom-client'

type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>

/** A worker that does not answer within this is left out of the scrape rather than hanging it. */
export const WORKER_METRICS_TIMEOUT_MS = 2000

export async function instanceMetrics (own: Registry, fromWorkers: Array<Promise<MetricsJson>>): Promise<string> {
  const settled = await Promise.allSettled(fromWorkers)
  const parts = settled.flatMap((result) => result.status === 'fulfilled' ? [result.value] : [])
  return await AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...parts]).metrics()
}

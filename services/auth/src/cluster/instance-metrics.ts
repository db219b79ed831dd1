/**
 * One scrape shows the whole instance: the worker that takes the scrape asks
 * the primary, which gathers every worker's registry and its own (the hashing
 * queue, the signing keys, its pool) and merges them with prom-client's
 * AggregatorRegistry (counters and histograms summed; each metric's own
 * aggregator otherwise).
 *
 * The instance's counters never go down while it runs, or Prometheus would
 * read a reset and over-count every rate() across it: a worker that does
 * not answer in time counts with its last answer, and a worker that exits
 * (recycled, or crashed) leaves the counters and histograms of its last
 * answer behind, added to every later scrape. A worker that drains hands
 * over its final counts once its last request is answered, so a recycle
 * loses nothing; one that dies (kill -9, a crash) loses what it counted after
 * its last scrape, never subtracted. Its gauges (heap, event-loop delay) go
 * with it.
 * @module
 */
import { AggregatorRegistry, type Registry } from 'prom-client'

export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>

/** A worker that does not answer within this counts with its last answer rather than hanging the scrape. */
export const WORKER_METRICS_TIMEOUT_MS = 2000

const isCumulative = (metric: MetricsJson[number]): boolean => ['counter', 'histogram'].includes(String(metric.type))

export class InstanceMetrics {
  private readonly own: Registry
  /** Each live worker's last answer, by its cluster id. */
  private readonly latest = new Map<number, MetricsJson>()
  /** The counters and histograms of workers that have exited, each their last answer. */
  private exited: MetricsJson[] = []

  constructor (own: Registry) {
    this.own = own
  }

  async render (workers: ReadonlyArray<{ id: number, metrics: () => Promise<MetricsJson> }>): Promise<string> {
    await Promise.all(workers.map(async ({ id, metrics }) => {
      try {
        this.latest.set(id, await metrics())
      } catch {
        // Too slow, or gone meanwhile: its last answer stands in.
      }
    }))
    if (this.exited.length > 1) this.exited = [await AggregatorRegistry.aggregate(this.exited).getMetricsAsJSON()]
    return await AggregatorRegistry.aggregate([await this.own.getMetricsAsJSON(), ...this.latest.values(), ...this.exited]).metrics()
  }

  /** The worker `id` drained and sent its final counts: they are its last answer. */
  workerFinished (id: number, metrics: MetricsJson): void {
    this.latest.set(id, metrics)
  }

  /** The worker `id` is gone (its channel closed, so nothing more from it can arrive): what it counted up to its last answer stays in the instance's counts. */
  workerExited (id: number): void {
    const last = this.latest.get(id)
    this.latest.delete(id)
    if (last !== undefined) this.exited.push(last.filter(isCumulative))
  }
}

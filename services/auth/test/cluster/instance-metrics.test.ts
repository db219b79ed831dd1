/**
 * The instance's scrape (cluster/instance-metrics.ts) with real prom-client
 * registries standing for the primary and its workers: counters summed,
 * and never going down when a worker is slow, drains or dies, or Prometheus
 * reads a reset and over-counts every rate() across it.
 */
import t from 'tap'
import { Counter, Gauge, Registry } from 'prom-client'
import { InstanceMetrics, type MetricsJson } from '../../src/cluster/instance-metrics.js'

interface FakeWorker { registry: Registry, requests: Counter, heap: Gauge }

function worker (): FakeWorker {
  const registry = new Registry()
  return {
    registry,
    requests: new Counter({ name: 'requests_total', help: 'requests', registers: [registry] }),
    heap: new Gauge({ name: 'heap_bytes', help: 'heap', registers: [registry] })
  }
}

/**
 * A worker's answer as the primary receives it: a copy, serialised over the
 * IPC channel. Not the registry's own objects, which prom-client hands out
 * live, so a later increment would change an answer already given.
 */
const snapshot = async (w: FakeWorker): Promise<MetricsJson> => JSON.parse(JSON.stringify(await w.registry.getMetricsAsJSON()))
const answering = (id: number, w: FakeWorker) => ({ id, metrics: async () => await snapshot(w) })
const silent = (id: number) => ({ id, metrics: async () => { throw new Error('no answer to metrics within 2000 ms') } })

/** A sample's value in the text exposition, or undefined when the metric has none. */
function valueOf (text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

t.test('one scrape sums every worker\'s counters with the primary\'s own', async (t) => {
  const own = worker()
  const [a, b] = [worker(), worker()]
  own.requests.inc(1)
  a.requests.inc(2)
  b.requests.inc(3)
  const text = await new InstanceMetrics(own.registry).render([answering(1, a), answering(2, b)])
  t.equal(valueOf(text, 'requests_total'), 6)
})

t.test('a worker that does not answer counts with its last answer: the sum does not drop', async (t) => {
  const metrics = new InstanceMetrics(worker().registry)
  const [a, b] = [worker(), worker()]
  a.requests.inc(2)
  b.requests.inc(3)
  t.equal(valueOf(await metrics.render([answering(1, a), answering(2, b)]), 'requests_total'), 5)
  a.requests.inc(10)
  b.requests.inc(100)
  t.equal(valueOf(await metrics.render([answering(1, a), silent(2)]), 'requests_total'), 15, 'b\'s 3, its last answer, not 0 and not 103')
  t.equal(valueOf(await metrics.render([answering(1, a), answering(2, b)]), 'requests_total'), 115, 'and its own count once it answers again')
})

t.test('workers that exit leave their counters in every later scrape, once each; their gauges go with them', async (t) => {
  const metrics = new InstanceMetrics(worker().registry)
  const [a, b, c] = [worker(), worker(), worker()]
  a.requests.inc(2)
  b.requests.inc(3)
  c.requests.inc(4)
  for (const [w, heap] of [[a, 10], [b, 20], [c, 30]] as const) w.heap.set(heap)
  t.equal(valueOf(await metrics.render([answering(1, a), answering(2, b), answering(3, c)]), 'requests_total'), 9)

  // a drains: its final counts, handed over after its last request, are what stays.
  a.requests.inc(5)
  metrics.workerFinished(1, await snapshot(a))
  metrics.workerExited(1)
  // b dies (kill -9): what it counted since its last answer is lost, never subtracted.
  b.requests.inc(1000)
  metrics.workerExited(2)
  const after = await metrics.render([answering(3, c)])
  t.equal(valueOf(after, 'requests_total'), 14, 'a\'s final 7, b\'s last 3, c\'s 4')
  t.equal(valueOf(after, 'heap_bytes'), 30, 'the gauge is the live worker\'s alone')

  c.requests.inc(1)
  metrics.workerExited(3)
  const d = worker()
  d.requests.inc(1)
  t.equal(valueOf(await metrics.render([answering(4, d)]), 'requests_total'), 15, 'c\'s last answer (4; its 1 since was never scraped) joins a\'s and b\'s, with d\'s 1')
  t.equal(valueOf(await metrics.render([answering(4, d)]), 'requests_total'), 15, 'and a second scrape counts the exited once, not again')
})

t.test('a worker that exits before it ever answered (a start that failed) is nothing to keep, and breaks no scrape', async (t) => {
  const metrics = new InstanceMetrics(worker().registry)
  const a = worker()
  a.requests.inc(2)
  metrics.workerExited(7)
  t.equal(valueOf(await metrics.render([answering(1, a)]), 'requests_total'), 2)
})

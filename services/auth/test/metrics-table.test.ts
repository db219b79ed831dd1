/**
 * docs/operators.md's metrics table names every metric metrics.ts registers
 * (and passwords/hashing-metrics.ts, the hashing queue's, which the
 * hashing process registers), and nothing they do not: a metric added to either side without the other
 * fails here. Both sides are parsed, so a new metric needs no change to this test.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'

const METRICS = ['../src/metrics/metrics.ts', '../src/passwords/hashing-metrics.ts'].map((file) => readFileSync(new URL(file, import.meta.url), 'utf8')).join('\n')
const OPERATORS = readFileSync(new URL('../../../docs/operators.md', import.meta.url), 'utf8')

/** `name: 'tessera_…'`, `gauge('tessera_…', …)` and `poolGauge('tessera_…', …)`: every metric of Tessera's own. */
function registered (source: string): Set<string> {
  return new Set([...source.matchAll(/(?:name: |gauge\(|Gauge\()'(tessera_[a-z_]+)'/g)].map((match) => match[1] ?? ''))
}

/** The tessera_ names in the first column of the table under `### Metrics`. */
function documented (markdown: string): Set<string> {
  const section = markdown.split(/^### /m).find((part) => part.startsWith('Metrics ')) ?? ''
  const names = new Set<string>()
  for (const line of section.split('\n')) {
    const first = /^\| ([^|]+) \|/.exec(line)?.[1]
    for (const match of first?.matchAll(/`(tessera_[a-z_]+)`/g) ?? []) names.add(match[1] ?? '')
  }
  return names
}

t.test('the metrics table names every metric metrics.ts registers, and nothing else', async (t) => {
  const fromCode = registered(METRICS)
  const fromDocs = documented(OPERATORS)
  t.ok(fromCode.size >= 15, `metrics.ts was parsed (${fromCode.size} names)`)
  t.same([...fromCode].filter((name) => !fromDocs.has(name)).sort(), [], 'registered but missing from docs/operators.md#metrics')
  t.same([...fromDocs].filter((name) => !fromCode.has(name)).sort(), [], 'in docs/operators.md#metrics but not registered')
})

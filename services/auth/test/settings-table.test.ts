/**
 * docs/operators.md has one settings table, and it names exactly the
 * variables config.ts reads: a setting added to either without the other
 * fails here. Both sides are parsed, so new settings need no change to this test.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'

const CONFIG = readFileSync(new URL('../src/config.ts', import.meta.url), 'utf8')
const OPERATORS = readFileSync(new URL('../../../docs/operators.md', import.meta.url), 'utf8')

/** `read.integer('PORT', …)`, `read.optional('X')`, `env.NODE_ENV`: every name the loader reads. */
function configNames (source: string): Set<string> {
  const names = new Set<string>()
  for (const match of source.matchAll(/\bread\.\w+\(\s*'([A-Z][A-Z0-9_]*)'/g)) names.add(match[1] ?? '')
  for (const match of source.matchAll(/\benv\.([A-Z][A-Z0-9_]*)\b/g)) names.add(match[1] ?? '')
  return names
}

/** The first column of every row of the table under `## Settings`: `NAME` or `NAME`, `OTHER`. */
function tableNames (markdown: string): { names: Set<string>, tables: number } {
  const section = markdown.split(/^## /m).find((part) => part.startsWith('Settings\n')) ?? ''
  const names = new Set<string>()
  for (const line of section.split('\n')) {
    const first = /^\| ([^|]+) \|/.exec(line)?.[1]
    if (first === undefined) continue
    for (const match of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.add(match[1] ?? '')
  }
  const tables = section.split('\n').filter((line) => /^\|(\s*-+\s*\|)+$/.test(line.replace(/---/g, '-'))).length
  return { names, tables }
}

t.test('the settings table names every variable config.ts reads, and nothing else', async (t) => {
  const fromCode = configNames(CONFIG)
  const { names: fromDocs, tables } = tableNames(OPERATORS)
  t.ok(fromCode.size >= 30, `config.ts was parsed (${fromCode.size} names)`)
  t.equal(tables, 1, 'one settings table')
  t.same([...fromCode].filter((name) => !fromDocs.has(name)).sort(), [], 'read by config.ts but missing from docs/operators.md#settings')
  t.same([...fromDocs].filter((name) => !fromCode.has(name)).sort(), [], 'in docs/operators.md#settings but not read by config.ts')
})

/**
 * docs/operators.md has one settings table, and it names exactly the
 * variables config.ts reads, and in its `NAME (notes)` rows exactly the
 * NOTES_ variables services/notes reads, and that the rows of the other
 * variables notes reads (PORT, DATABASE_URL, …) say so: a setting added to
 * either side without the other fails here. Both sides are parsed, so new
 * settings need no change to this test.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'

const CONFIG = readFileSync(new URL('../src/config.ts', import.meta.url), 'utf8')
const NOTES_CONFIG = readFileSync(new URL('../../notes/src/config.ts', import.meta.url), 'utf8')
const OPERATORS = readFileSync(new URL('../../../docs/operators.md', import.meta.url), 'utf8')

/** `read.integer('PORT', …)`, `read.optional('X')`, `env.NODE_ENV`: every name the loader reads. */
function configNames (source: string): Set<string> {
  const names = new Set<string>()
  for (const match of source.matchAll(/\bread\.\w+\(\s*'([A-Z][A-Z0-9_]*)'/g)) names.add(match[1] ?? '')
  for (const match of source.matchAll(/\benv\.([A-Z][A-Z0-9_]*)\b/g)) names.add(match[1] ?? '')
  return names
}

const SETTINGS = OPERATORS.split(/^## /m).find((part) => part.startsWith('Settings\n')) ?? ''

/** The first column of every row of the table under `## Settings`: `NAME` or `NAME`, `OTHER`. */
function tableNames (section: string): { names: Set<string>, tables: number } {
  const names = new Set<string>()
  for (const line of section.split('\n')) {
    const first = /^\| ([^|]+) \|/.exec(line)?.[1]
    if (first === undefined) continue
    for (const match of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.add(match[1] ?? '')
  }
  const tables = section.split('\n').filter((line) => /^\|(\s*-+\s*\|)+$/.test(line.replace(/---/g, '-'))).length
  return { names, tables }
}

/** Every name notes' loader reads, NOTES_ or not: `get(env, 'LOG_LEVEL')`, `integer(env, 'NOTES_JWKS_TTL', …)`. */
function notesReads (source: string): Set<string> {
  return new Set([...source.matchAll(/\(env, '([A-Z][A-Z0-9_]*)'/g)].map((match) => match[1] ?? ''))
}

/** Of those, notes' own settings. */
function notesNames (source: string): Set<string> {
  return new Set([...notesReads(source)].filter((name) => name.startsWith('NOTES_')))
}

/** The whole row of the table whose first column names `name`, or undefined. */
function rowOf (section: string, name: string): string | undefined {
  return section.split('\n').find((line) => /^\| ([^|]+) \|/.exec(line)?.[1]?.includes(`\`${name}\``) === true)
}

/** The rows of that table for notes' own settings: `| NAME (notes) |`. */
function notesRows (section: string): Set<string> {
  return new Set([...section.matchAll(/^\| ([A-Z][A-Z0-9_]*) \(notes\) \|/gm)].map((match) => match[1] ?? ''))
}

t.test('the settings table names every variable config.ts reads, and nothing else', async (t) => {
  const fromCode = configNames(CONFIG)
  const { names: fromDocs, tables } = tableNames(SETTINGS)
  t.ok(fromCode.size >= 30, `config.ts was parsed (${fromCode.size} names)`)
  t.equal(tables, 1, 'one settings table')
  t.same([...fromCode].filter((name) => !fromDocs.has(name)).sort(), [], 'read by config.ts but missing from docs/operators.md#settings')
  t.same([...fromDocs].filter((name) => !fromCode.has(name)).sort(), [], 'in docs/operators.md#settings but not read by config.ts')
})

t.test('the settings table has a notes row for every NOTES_ variable notes reads, and nothing else', async (t) => {
  const fromCode = notesNames(NOTES_CONFIG)
  const fromDocs = notesRows(SETTINGS)
  t.ok(fromCode.size >= 5, `notes' config.ts was parsed (${fromCode.size} names)`)
  t.same([...fromCode].filter((name) => !fromDocs.has(name)).sort(), [], 'read by notes but missing from docs/operators.md#settings')
  t.same([...fromDocs].filter((name) => !fromCode.has(name)).sort(), [], 'in docs/operators.md#settings but not read by notes')
})

// Notes reads some of Tessera's names with defaults and rules of its own (no
// embedded Postgres: DATABASE_URL is required there); an operator deploying
// notes from the table must learn from that row that notes reads it at all.
t.test('every variable notes reads beyond its NOTES_ ones has a row that says notes reads it', async (t) => {
  const shared = [...notesReads(NOTES_CONFIG)].filter((name) => !name.startsWith('NOTES_')).sort()
  t.ok(shared.length >= 4, `notes' config.ts was parsed (${shared.join(', ')})`)
  const silent = shared.filter((name) => !/\bnotes\b/.test(rowOf(SETTINGS, name) ?? ''))
  t.same(silent, [], 'read by notes, but its row in docs/operators.md#settings is missing or does not mention notes')
})

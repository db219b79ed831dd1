/**
 * pruneOrphanTestClusters on a directory of its own standing in for
 * /dev/shm: which test clusters it removes, and which it must leave.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { pruneOrphanTestClusters, recordClusterCheckout } from '../dist/index.js'

test('removes the clusters of checkouts that are gone, and only those', async (t) => {
  const parent = mkdtempSync(join(tmpdir(), 'tessera-shm-'))
  const checkout = mkdtempSync(join(tmpdir(), 'tessera-checkout-'))
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'])
  t.after(() => {
    sleeper.kill()
    rmSync(parent, { recursive: true, force: true })
    rmSync(checkout, { recursive: true, force: true })
  })
  const hourAgo = (Date.now() - 3_600_000) / 1000
  /** A cluster directory as with-test-db.mjs leaves it, an hour old. */
  const cluster = (name, { owner, postmasterPid } = {}) => {
    const dir = join(parent, name)
    mkdirSync(join(dir, 'postgres'), { recursive: true })
    if (owner !== undefined) recordClusterCheckout(dir, owner)
    if (postmasterPid !== undefined) writeFileSync(join(dir, 'postgres', 'postmaster.pid'), `${postmasterPid}\n${dir}/postgres\n`)
    utimesSync(dir, hourAgo, hourAgo)
    return dir
  }
  const own = cluster('tessera-test-0000000000000001', { owner: '/nowhere/at/all' })
  const live = cluster('tessera-test-0000000000000002', { owner: checkout })
  const gone = cluster('tessera-test-0000000000000003', { owner: join(checkout, 'deleted') })
  const legacy = cluster('tessera-test-0000000000000004')
  const running = cluster('tessera-test-0000000000000005', { owner: join(checkout, 'deleted'), postmasterPid: sleeper.pid })
  const deadPostmaster = cluster('tessera-test-0000000000000006', { owner: join(checkout, 'deleted'), postmasterPid: 2 ** 22 + 1 })
  const settling = join(parent, 'tessera-test-0000000000000007')
  mkdirSync(settling)
  const other = cluster('something-else')
  // Read back trimmed, the record of a checkout whose name ends in a space named one that does not exist.
  const spacedCheckout = join(checkout, 'spaced ')
  mkdirSync(spacedCheckout)
  const spaced = cluster('tessera-test-0000000000000008', { owner: spacedCheckout })
  // A checkout that cannot be looked up (here a symlink loop) is not known to be gone.
  const loop = join(checkout, 'loop')
  symlinkSync(loop, loop)
  const unreachable = cluster('tessera-test-0000000000000009', { owner: join(loop, 'checkout') })

  assert.deepEqual(pruneOrphanTestClusters(parent, own).sort(), [gone, legacy, deadPostmaster].sort(),
    'a gone checkout, one never recorded, and one whose postmaster is dead')
  assert.deepEqual(pruneOrphanTestClusters(parent, own), [], 'nothing more the second time')
  for (const kept of [own, live, running, settling, other, spaced, unreachable]) assert.ok(existsSync(kept), `${kept} is still there`)
  assert.deepEqual(pruneOrphanTestClusters(join(parent, 'missing'), own), [], 'no such parent: nothing to do')
})

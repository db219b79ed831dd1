/**
 * A test process that a signal ends runs no teardowns: a Ctrl-C (SIGINT to
 * the terminal's group) or tap's timeout (SIGALRM, which the test process
 * sends itself). What it held outside itself is still stopped and removed
 * (testkit's atExit): its temporary directories, the children it spawned, and
 * the embedded Postgres pg_ctl started in a session of its own, which no
 * signal to the test reaches.
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { spawnProcess } from '@tessera/testkit'
import { REPO_ROOT } from '../helpers/gateway.js'
import { within } from '../helpers/http.js'
import { processIsGone } from '../../src/util/process-gone.js'

const FIXTURE = path.join(REPO_ROOT, 'services/auth/test/helpers/interrupted-fixture.ts')
const TYPESCRIPT_LOADER = path.join(REPO_ROOT, 'scripts/node-ts.mjs')

interface Held { dir: string, child: number, postgres?: { dataDir: string, cluster: string, postmaster: number } }

async function heldBy (t: Test, args: string[]): Promise<{ held: Held, fixture: ReturnType<typeof spawnProcess> }> {
  const fixture = spawnProcess(process.execPath, ['--import', TYPESCRIPT_LOADER, FIXTURE, ...args], { env: { PATH: process.env.PATH ?? '' } })
  t.teardown(async () => { await fixture.stop('SIGKILL') })
  const [, json = ''] = await fixture.waitFor(/^held (.*)$/m, 90_000, 'the fixture holding what it holds')
  return { held: JSON.parse(json) as Held, fixture }
}

const gone = async (pid: number): Promise<boolean> => await within(10_000, async () => processIsGone(pid), 50) !== undefined

t.test('SIGINT (a Ctrl-C): the temporary directory is removed and the spawned child ended', async (t) => {
  const { held, fixture } = await heldBy(t, [])
  t.ok(existsSync(held.dir) && !processIsGone(held.child), 'both there while the test runs')
  fixture.child.kill('SIGINT')
  t.equal(await fixture.exited, null, 'the process still ends by the signal')
  t.equal(fixture.child.signalCode, 'SIGINT')
  t.notOk(existsSync(held.dir), 'the directory is removed')
  t.ok(await gone(held.child), 'the child has ended')
})

t.test('SIGALRM (tap\'s timeout): the embedded Postgres is stopped and its data directory and cluster removed', async (t) => {
  const { held, fixture } = await heldBy(t, ['postgres'])
  const postgres = held.postgres
  if (postgres === undefined) throw new Error('the fixture started no Postgres')
  t.ok(!processIsGone(postgres.postmaster) && existsSync(postgres.cluster), 'the postmaster runs while the test runs')
  fixture.child.kill('SIGALRM')
  t.equal(await fixture.exited, null)
  t.equal(fixture.child.signalCode, 'SIGALRM')
  t.ok(await gone(postgres.postmaster), 'the postmaster has exited')
  t.notOk(existsSync(postgres.cluster), 'its cluster is removed')
  t.notOk(existsSync(postgres.dataDir), 'its data directory is removed')
  t.notOk(existsSync(held.dir), 'the temporary directory is removed')
  t.ok(await gone(held.child), 'the child has ended')
})

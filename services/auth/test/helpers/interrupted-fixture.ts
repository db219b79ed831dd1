/**
 * A test file that a signal ends midway (e2e/interrupted-test.test.ts): it
 * holds a temporary directory, a spawned child and, with `postgres` as its
 * argument, an embedded Postgres on a data directory, prints where they are
 * on a `held` line, and waits to be ended.
 */
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { spawnProcess } from '@tessera/testkit'
import { tempDir } from './gateway.js'
import { clusterDir, removeDataDirAtEnd, runCli } from './server.js'

const dir = tempDir(t, 'interrupted')
const child = spawnProcess(process.execPath, ['-e', 'setInterval(() => {}, 1000)'])
let postgres: { dataDir: string, cluster: string, postmaster: number } | undefined
if (process.argv[2] === 'postgres') {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tessera-interrupted-data-'))
  removeDataDirAtEnd(t, dataDir)
  const started = await runCli(['db', 'start'], { TESSERA_DATA_DIR: dataDir })
  if (started.code !== 0) throw new Error(`db start failed: ${started.stderr}`)
  const cluster = clusterDir(dataDir)
  const postmaster = Number(readFileSync(path.join(cluster, 'postmaster.pid'), 'utf8').split('\n')[0])
  postgres = { dataDir, cluster, postmaster }
}
process.stdout.write(`held ${JSON.stringify({ dir, child: child.child.pid, postgres })}\n`)
await new Promise((resolve) => setTimeout(resolve, 120_000))

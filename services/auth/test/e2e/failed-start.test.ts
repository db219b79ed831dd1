/**
 * A start that fails leaves nothing of its own running: the embedded
 * Postgres it started is stopped, whether the start failed by itself (an
 * HTTP worker that cannot start) or an error nothing caught ended it (a throw
 * in a callback, provoked by test/helpers/provoke.mjs), and the instance
 * exits 1 with one line saying why, no stack; or a signal stopped it
 * before it served (Ctrl-C at `make run`), and it exits 0.
 */
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnProcess } from '@tessera/testkit'
import { clusterDir, removeDataDirAtEnd, runCli, SERVER_ENTRY } from '../helpers/server.js'

// initdb and several starts of the embedded Postgres, on a machine that may be busy.
t.setTimeout(300_000)

const PROVOKE = `--import=${fileURLToPath(new URL('../helpers/provoke.mjs', import.meta.url))}`
const SECRET = 'provoked-secret-value'

function postgresRunningOn (pgdata: string): boolean {
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').some((line) => line.includes('postgres') && line.includes(pgdata))
}

/** One data directory for the file: the cluster is made once, by the first start. */
const dataDir = mkdtempSync(path.join(tmpdir(), 'tessera-failed-start-'))
removeDataDirAtEnd(t, dataDir)

/** The start's exit code once every process holding its output has exited, or 'served' (tap's timeout would run no teardown). */
async function outcome (t: Test, provoke: string): Promise<{ code: number | null | 'served', output: () => string, stdout: () => string, stderr: () => string }> {
  const server = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', PORT: '0', TESSERA_DATA_DIR: dataDir, TESSERA_WORKERS: '2', NODE_OPTIONS: PROVOKE, PROVOKE: provoke } })
  t.teardown(async () => { await server.stop('SIGKILL') })
  const code = await Promise.race([server.closed, server.waitFor(/"msg":"tessera is serving"/, 240_000, 'the server').then(() => 'served' as const, async () => await server.closed)])
  return { code, ...server }
}

/** `abandoned`: a signal or an error nothing caught ended the start, which then logs its stop as a drain does. */
async function failedStart (t: Test, provoke: string, exitCode = 1, abandoned = true): Promise<{ stdout: string, stderr: string }> {
  // A Postgres left running by an earlier case would be adopted, and this case not tested.
  if (postgresRunningOn(clusterDir(dataDir))) {
    t.fail('no embedded Postgres runs before the start')
    await runCli(['db', 'stop'], { TESSERA_DATA_DIR: dataDir })
  }
  const server = await outcome(t, provoke)
  t.equal(server.code, exitCode, `exit ${exitCode}`, { output: server.output().slice(-3000) })
  t.notOk(postgresRunningOn(clusterDir(dataDir)), 'the embedded Postgres this start started is not left running', { output: server.output().slice(-3000) })
  t.notMatch(server.output(), SECRET, 'the secret on the error is not in the output')
  if (abandoned) {
    // As a drain's: the last line says the stop finished, and whether it stopped the embedded Postgres.
    t.match(server.stdout().trim().split('\n').at(-1), /"embedded_postgres_stopped":true,"msg":"stopped"/, 'the last line is "stopped"')
  }
  return { stdout: server.stdout(), stderr: server.stderr() }
}

t.test('an error nothing caught while the workers start: the Postgres this start started is stopped, one log line, no stack', async (t) => {
  const { stdout, stderr } = await failedStart(t, 'throw-at-fork')
  t.equal(stderr, '', 'nothing on stderr')
  const errors = stdout.split('\n').filter((line) => line.includes('"level":50'))
  t.equal(errors.length, 1, 'one error line', { errors })
  t.match(errors[0], '"msg":"shutting down after an error"')
})

t.test('an error nothing caught while the embedded Postgres starts: the start waits for it, then stops it', async (t) => {
  const { stdout, stderr } = await failedStart(t, 'throw-at-postgres-start')
  t.equal(stderr, '', 'nothing on stderr')
  const errors = stdout.split('\n').filter((line) => line.includes('"level":50'))
  t.equal(errors.length, 1, 'one error line', { errors })
  t.match(errors[0], /"message":"provoked while Postgres starts".*"msg":"shutting down after an error"/)
})

t.test('Ctrl-C while the embedded Postgres starts (make run): the start waits for it, then stops it, and exits 0', async (t) => {
  const { stdout, stderr } = await failedStart(t, 'sigint-at-postgres-start', 0)
  t.equal(stderr, '', 'nothing on stderr')
  t.match(stdout, /"signal":"SIGINT".*"msg":"stopping before the start finished"/)
  t.notMatch(stdout, /"level":50/, 'no error line')
})

t.test('SIGTERM while the workers start: they and the Postgres this start started are stopped, exit 0', async (t) => {
  const { stdout, stderr } = await failedStart(t, 'sigterm-at-fork', 0)
  t.equal(stderr, '', 'nothing on stderr')
  t.match(stdout, /"signal":"SIGTERM".*"msg":"stopping before the start finished"/)
})

t.test('a start whose Postgres does not stop still exits, after ABANDONED_START_LIMIT_MS (30 s), saying what may be left running', async (t) => {
  const postmaster = (): number => Number(readFileSync(path.join(clusterDir(dataDir), 'postmaster.pid'), 'utf8').split('\n')[0])
  t.teardown(() => {
    // Continued, it takes the stop it was sent, or the file's teardown stops it.
    try { process.kill(postmaster(), 'SIGCONT') } catch {}
  })
  const server = await outcome(t, 'throw-at-fork-postgres-frozen')
  t.equal(server.code, 1, 'exit 1', { output: server.output().slice(-3000) })
  t.equal(server.stderr(), '', 'nothing on stderr')
  t.match(server.stdout().split('\n').filter((line) => line.includes('"level":50')), [
    /"message":"provoked at start, Postgres frozen".*"msg":"shutting down after an error"/,
    /"limit_ms":30000,"msg":"what the start had started did not stop in time; exiting \(an embedded Postgres it started may be left running: tessera db stop\)"/
  ])
  process.kill(postmaster(), 'SIGCONT')
  t.equal((await runCli(['db', 'stop'], { TESSERA_DATA_DIR: dataDir })).code, 0)
})

t.test('a start that fails by itself (its HTTP workers cannot start) stops the Postgres it started', async (t) => {
  const { stdout, stderr } = await failedStart(t, 'worker-boot-fails', 1, false)
  t.equal(stderr, 'tessera: an HTTP worker exited with 1 while starting\n')
  t.notMatch(stdout, '"msg":"stopped"', 'its one line on stderr says it: no "stopped" of a stop nobody asked for')
})

t.test('a Postgres this start did not start (tessera db start) is left running', async (t) => {
  t.equal((await runCli(['db', 'start'], { TESSERA_DATA_DIR: dataDir })).code, 0)
  t.equal((await outcome(t, 'throw-at-fork')).code, 1)
  t.ok(postgresRunningOn(clusterDir(dataDir)), 'still running: it is db start\'s')
})

/**
 * Every line an instance's processes write is a JSON log line: Node's own
 * text (a process warning's `(node:PID) Warning: …` lines, an uncaught
 * error's stack) never reaches stdout or stderr, where it would break an
 * operator's JSON log pipeline and print secrets unredacted. The real
 * server (dist/), its workers and its hashing process, made to warn and to
 * fail by test/helpers/provoke.mjs; and the CLI, whose stderr is its own
 * one-line words.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { spawnProcess } from '@tessera/testkit'
import { createTestDatabase } from '../helpers/db.js'
import { instancePids, runCli, SERVER_ENTRY, startServer } from '../helpers/server.js'

const PROVOKE = `--import=${fileURLToPath(new URL('../helpers/provoke.mjs', import.meta.url))}`
/** provoke.mjs's secret, on the errors it throws. */
const SECRET = 'provoked-secret-value'

interface LogLine { level: number, pid: number, msg: string, code?: number, warning?: Record<string, unknown>, err?: Record<string, unknown> }

/** Every line of `output`, each of which must be JSON. */
function jsonLines (t: Test, output: string): LogLine[] {
  const lines = output.split('\n').filter((line) => line !== '')
  const notJson = lines.filter((line) => { try { JSON.parse(line); return false } catch { return true } })
  t.same(notJson, [], 'every line is JSON')
  return lines.flatMap((line) => { try { return [JSON.parse(line) as LogLine] } catch { return [] } })
}

const env = async (t: Test, more: Record<string, string> = {}): Promise<Record<string, string>> =>
  ({ DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2', NODE_OPTIONS: PROVOKE, ...more })

t.test('a process warning is one warn line of the process\'s log, in the primary, each worker and the hashing process', async (t) => {
  const server = await startServer(t, await env(t))
  // The primary, its two HTTP workers and its hashing process.
  const pids = instancePids(server.process.pid ?? 0)
  t.equal(pids.length, 4, 'four processes')
  for (const pid of pids) process.kill(pid, 'SIGWINCH')
  const warnings = (await server.logOf(2 * pids.length, (line) => line.includes('"msg":"process warning"'))).map((line) => JSON.parse(line) as LogLine)
  for (const pid of pids) {
    t.same(warnings.filter((line) => line.pid === pid).map(({ level, warning }) => ({ level, warning })), [
      { level: 40, warning: { name: 'Warning', code: 'TESSERA_TEST_WARNING', message: 'a warning as a dependency emits one', detail: 'with a detail' } },
      { level: 40, warning: { name: 'DeprecationWarning', code: 'DEP0999', message: 'an API a dependency still calls is deprecated' } }
    ], `process ${pid}: name, code, message, detail; no stack`)
  }
  t.equal(await server.stop(), 0)
  await server.closed
  jsonLines(t, server.output())
})

t.test('an error nothing catches in the hashing process is one error line, redacted, and the primary starts another', async (t) => {
  const server = await startServer(t, await env(t))
  const hashing = (await server.logOf(1, (line) => line.includes('"msg":"hashing process started"'))).map((line) => JSON.parse(line) as { hashing_pid: number })[0]
  process.kill(hashing?.hashing_pid ?? 0, 'SIGURG')
  await server.logOf(2, (line) => line.includes('"msg":"hashing process started"'))
  t.equal(await server.stop(), 0)
  await server.closed
  const lines = jsonLines(t, server.output())
  t.match(lines.filter((line) => line.pid === hashing?.hashing_pid && line.level === 50), [{ msg: 'the hashing process failed; exiting', err: { message: 'provoked', password: '[redacted]' } }])
  t.ok(lines.some((line) => line.pid === server.process.pid && line.msg === 'the hashing process exited; starting another' && line.code === 1), 'the primary says it exited')
  t.notMatch(server.output(), SECRET, 'the secret on the error is not in the output')
})

t.test('an error nothing catches while the instance starts is one error line, redacted, and exit 1', async (t) => {
  const server = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', PORT: '0', ...await env(t, { PROVOKE: 'throw-at-fork' }) } })
  t.teardown(async () => { await server.stop('SIGKILL') })
  t.equal(await server.closed, 1)
  const lines = jsonLines(t, server.output())
  t.match(lines.filter((line) => line.level === 50), [{ msg: 'shutting down after an error', err: { message: 'provoked at start', password: '[redacted]' } }])
  t.notMatch(server.output(), SECRET, 'the secret on the error is not in the output')
})

t.test('HTTP workers whose primary was killed (kill -9) as it forked them exit quietly: no EPIPE stack on the stderr they share', async (t) => {
  for (let run = 1; run <= 3; run++) {
    const server = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', PORT: '0', ...await env(t, { PROVOKE: 'kill-at-fork' }) } })
    t.teardown(async () => { await server.stop('SIGKILL') })
    // Closed once every process holding the output has exited: the workers too.
    t.equal(await server.closed, null, `run ${run}: the primary was killed`)
    t.equal(server.stderr(), '', `run ${run}: nothing on stderr`)
    jsonLines(t, server.stdout())
  }
})

t.test('an HTTP worker that cannot start says why in one error line; the instance\'s failed start is its one line on stderr', async (t) => {
  const server = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', PORT: '0', ...await env(t, { PROVOKE: 'worker-boot-fails' }) } })
  t.teardown(async () => { await server.stop('SIGKILL') })
  t.equal(await server.closed, 1)
  t.equal(server.stderr(), 'tessera: an HTTP worker exited with 1 while starting\n', 'the start\'s failure, as before')
  const lines = jsonLines(t, server.stdout())
  const failed = lines.filter((line) => line.msg === 'the HTTP worker could not start')
  t.ok(failed.length >= 1, 'a worker says why')
  t.match(failed[0], { level: 50, err: { message: 'provoked boot failure', password: '[redacted]' } })
  t.notMatch(server.output(), SECRET, 'the secret on the error is not in the output')
})

t.test('the CLI says a process warning in one line of its own on stderr, and --json\'s output stays JSON', async (t) => {
  const { code, stdout, stderr } = await runCli(['--version', '--json'], { NODE_OPTIONS: PROVOKE, PROVOKE: 'warn-at-exit' })
  t.equal(code, 0)
  t.match(JSON.parse(stdout), { version: String })
  t.equal(stderr, 'tessera: Warning [TESSERA_TEST_WARNING]: a warning as a dependency emits one; with a detail\n' +
    'tessera: DeprecationWarning [DEP0999]: an API a dependency still calls is deprecated\n')
  const silenced = await runCli(['--version'], { NODE_OPTIONS: PROVOKE, PROVOKE: 'warn-at-exit', NODE_NO_WARNINGS: '1' })
  t.equal(silenced.stderr, '', 'NODE_NO_WARNINGS=1 silences them, as it silences Node\'s')
})

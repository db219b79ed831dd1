/**
 * scripts/test-workspaces.mjs, which `npm test` (and `make test-fast`) runs: every workspace's
 * tests at once, auth's streamed, the others' held and printed whole, and
 * the run failed when any one failed, only once all have finished.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runProcess, spawnProcess } from '../dist/index.js'

const script = fileURLToPath(new URL('../../../scripts/test-workspaces.mjs', import.meta.url))

/** A checkout of its own: package.json naming `workspaces`, each with the given `test` script (none when undefined). */
function checkout (t, workspaces) {
  const root = mkdtempSync(join(tmpdir(), 'tessera-workspaces-'))
  t.after(() => rmSync(root, { recursive: true, force: true }))
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'root', private: true, workspaces: Object.keys(workspaces) }))
  for (const [dir, testScript] of Object.entries(workspaces)) {
    mkdirSync(join(root, dir), { recursive: true })
    const scripts = testScript === undefined ? {} : { test: testScript }
    writeFileSync(join(root, dir, 'package.json'), JSON.stringify({ name: dir.replaceAll('/', '-'), version: '1.0.0', scripts }))
  }
  return root
}

const node = (code) => `node -e "${code}"`

test('a failing workspace fails the run, after every other one has finished and printed its report', async (t) => {
  const root = checkout(t, {
    'services/auth': node("console.log('auth streams this')"),
    failing: node("console.error('failing says why'); process.exit(3)"),
    slow: node("setTimeout(() => console.log('slow finished'), 1500)"),
    untested: undefined
  })
  const run = await runProcess(process.execPath, [script], { cwd: root, env: { PATH: process.env.PATH ?? '' } })
  assert.equal(run.code, 1, run.stdout + run.stderr)
  assert.match(run.stdout, /auth streams this/)
  assert.match(run.stdout, /\n# failing\n[^#]*failing says why/)
  assert.match(run.stdout, /\n# slow\n[^#]*slow finished/, 'the failure did not cut the slow one short')
  assert.match(run.stdout, /^passed {2}services\/auth {2}\d+ s$/m)
  assert.match(run.stdout, /^FAILED \(exit 3\) {2}failing {2}\d+ s$/m)
  assert.match(run.stdout, /^passed {2}slow {2}\d+ s$/m)
  assert.doesNotMatch(run.stdout, /untested/, 'a workspace without tests is not run')
  assert.ok(run.stdout.indexOf('auth streams this') < run.stdout.indexOf('# failing'), 'auth\'s report comes first, the held ones after it')
})

test('the run passes when every workspace passes', async (t) => {
  const root = checkout(t, { 'services/auth': node('0'), other: node('0') })
  const run = await runProcess(process.execPath, [script], { cwd: root, env: { PATH: process.env.PATH ?? '' } })
  assert.equal(run.code, 0, run.stdout + run.stderr)
  assert.match(run.stdout, /^passed {2}services\/auth {2}\d+ s\npassed {2}other {2}\d+ s$/m)
})

test('a script named as the argument runs in the workspaces that have it, and only there', async (t) => {
  const root = checkout(t, { 'services/auth': node('0'), other: node('process.exit(4)') })
  writeFileSync(join(root, 'services/auth/package.json'), JSON.stringify({ name: 'auth', version: '1.0.0', scripts: { 'test:fast': node("console.log('the fast lane')") } }))
  const run = await runProcess(process.execPath, [script, 'test:fast'], { cwd: root, env: { PATH: process.env.PATH ?? '' } })
  assert.equal(run.code, 0, run.stdout + run.stderr)
  assert.match(run.stdout, /the fast lane/)
  assert.match(run.stdout, /^passed {2}services\/auth {2}\d+ s$/m)
  assert.doesNotMatch(run.stdout, /other/, 'a workspace without test:fast is not run, its test neither')
})

/** True once the process has exited: no process has the pid, or it is a zombie its new parent has not reaped yet. */
function exited (pid) {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z')
  } catch {
    return true
  }
}

test('a SIGTERM to the run ends every workspace\'s tests, not only npm, and says so', async (t) => {
  // Each writes its pid where the test can read it, then waits a minute.
  const sleeper = node("require('fs').writeFileSync('pid', String(process.pid)); setTimeout(() => {}, 60000)")
  const root = checkout(t, { 'services/auth': sleeper, other: sleeper })
  const run = spawnProcess(process.execPath, [script], { cwd: root, env: { PATH: process.env.PATH ?? '' } })
  t.after(async () => { await run.stop('SIGKILL') })
  const pidFiles = ['services/auth/pid', 'other/pid'].map((file) => join(root, file))
  const deadline = Date.now() + 15_000
  while (!pidFiles.every((file) => existsSync(file) && readFileSync(file, 'utf8') !== '')) {
    assert.ok(Date.now() < deadline, 'both workspaces started their tests within 15 s')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const pids = pidFiles.map((file) => Number(readFileSync(file, 'utf8')))
  run.child.kill('SIGTERM')
  // Well inside the sleepers' minute: before, the held one's pipe stayed open until it ended on its own.
  await run.waitFor(/FAILED \(signal SIGTERM\) {2}other/, 15_000, 'the run\'s summary')
  assert.equal(await run.closed, 1)
  assert.match(run.stdout(), /^FAILED \(signal SIGTERM\) {2}services\/auth {2}\d+ s$/m)
  // Signalled, each is gone within moments; the bound is only for a run that left one going.
  const exitDeadline = Date.now() + 5_000
  while (!pids.every(exited) && Date.now() < exitDeadline) await new Promise((resolve) => setTimeout(resolve, 50))
  for (const pid of pids) assert.ok(exited(pid), `the test process ${pid} has exited`)
})

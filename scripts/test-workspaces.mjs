#!/usr/bin/env node
// Runs every workspace's `test` script at once (or the script its argument
// names: `test:fast` for `make test-fast`), on the database that
// scripts/with-test-db.mjs (its caller) provides. auth's tests,
// the longest by far, print as they run; each other workspace's output is
// held and printed whole once auth's are done, so no two reports interleave.
// Exits 1 when any workspace failed, after all of them finished; a summary
// line per workspace says which and how long each took.
//
// One after another (npm's --workspaces) they took auth's ten minutes plus
// notes' and the bench's three: the three files auth runs at once leave the
// cores idle for long stretches, waiting on clocks (docs/decisions.md,
// "CI under 15 minutes").
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'

/** The workspace whose output streams; the rest run beside it. */
const STREAMED = 'services/auth'

const script = process.argv[2] ?? 'test'

/** Workspaces in package.json's order, those with the script only. */
function testedWorkspaces () {
  const { workspaces } = JSON.parse(readFileSync('package.json', 'utf8'))
  return workspaces.filter((dir) => JSON.parse(readFileSync(`${dir}/package.json`, 'utf8')).scripts?.[script] !== undefined)
}

// Each workspace's npm runs in a process group of its own, which a signal
// here ends whole: npm passes a signal to its script's shell, which dies of
// it and leaves the test runner under it running (holding the held
// output's pipe, so this run waited for it to end on its own).
const children = new Set()
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of children) {
      try { process.kill(-child.pid, signal) } catch {} // the group has ended since
    }
  })
}

/** Runs one workspace's tests; resolves with how it ended (its exit code, or the signal that ended it), seconds taken and, unless streamed, its output. */
async function runTests (dir) {
  const started = performance.now()
  const streamed = dir === STREAMED
  const child = spawn('npm', ['run', script, '--workspace', dir], { detached: true, stdio: ['ignore', streamed ? 'inherit' : 'pipe', streamed ? 'inherit' : 'pipe'] })
  children.add(child)
  const output = []
  if (!streamed) {
    child.stdout.on('data', (chunk) => output.push(chunk))
    child.stderr.on('data', (chunk) => output.push(chunk))
  }
  const ended = await new Promise((resolve) => {
    child.on('error', (err) => { output.push(Buffer.from(`cannot run npm: ${err.message}\n`)); resolve('exit 1') })
    child.on('close', (exit, signal) => resolve(exit === 0 ? 'passed' : exit === null ? `signal ${signal}` : `exit ${exit}`))
  })
  children.delete(child)
  return { dir, ended, seconds: (performance.now() - started) / 1000, output: Buffer.concat(output) }
}

const runs = testedWorkspaces().map(runTests)
const results = await Promise.all(runs)
for (const { dir, output } of results) {
  if (dir !== STREAMED) process.stdout.write(`\n# ${dir}\n${output.toString()}`)
}
process.stdout.write('\n')
for (const { dir, ended, seconds } of results) {
  process.stdout.write(`${ended === 'passed' ? ended : `FAILED (${ended})`}  ${dir}  ${seconds.toFixed(0)} s\n`)
}
process.exit(results.every(({ ended }) => ended === 'passed') ? 0 : 1)

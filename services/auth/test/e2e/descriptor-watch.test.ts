/**
 * The descriptor watch (util/descriptor-watch.ts) in a process that runs out
 * of file descriptors, as an HTTP worker does under a flood of idle
 * connections past its RLIMIT_NOFILE: told once when none is left, once when
 * one is again. Before it, libuv reset every new connection and nothing was
 * logged. A child under `prlimit`, so the test takes 64 descriptors, not
 * however many this machine allows.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { holdEveryDescriptor } from '../helpers/child-descriptors.js'

const WATCH = new URL('../../dist/util/descriptor-watch.js', import.meta.url).href

// Takes every descriptor for several checks, gives them back, lets several checks pass, and says what it was told.
const CHILD = `
import { closeSync, openSync } from 'node:fs'
import { watchDescriptors } from ${JSON.stringify(WATCH)}
const told = []
const watch = watchDescriptors({ everyMs: 50, exhausted: (code) => told.push('exhausted ' + code), recovered: () => told.push('recovered') })
await new Promise((resolve) => setTimeout(resolve, 200))
${holdEveryDescriptor(400)}
await new Promise((resolve) => setTimeout(resolve, 400))
watch.stop()
process.stdout.write(JSON.stringify({ code, opened: held.length, told }))
`

t.test('out of descriptors is told once, and so is their return', async (t) => {
  const { stdout } = await promisify(execFile)('prlimit', ['--nofile=64:64', '--', process.execPath, '--input-type=module', '-e', CHILD], { timeout: 30_000 })
  const outcome = JSON.parse(stdout) as { code: string, opened: number, told: string[] }
  t.equal(outcome.code, 'EMFILE', `every descriptor taken (${outcome.opened} opened)`)
  t.same(outcome.told, ['exhausted EMFILE', 'recovered'], 'nothing while there were descriptors, one call at each change')
})

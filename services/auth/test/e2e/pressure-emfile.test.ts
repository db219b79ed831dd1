/**
 * The overload sampler (util/pressure.ts) in a process with no file
 * descriptor left, as an HTTP worker is under an idle-connection flood past
 * its RLIMIT_NOFILE: it keeps sampling, and nothing it does throws.
 * @fastify/under-pressure sampled with process.memoryUsage(), which opens
 * /proc/self/stat: at EMFILE it threw from its timer, an uncaught error, and
 * every worker drained and exited at once. A child under `prlimit`, so the
 * test takes 64 descriptors, not however many this machine allows.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { holdEveryDescriptor } from '../helpers/child-descriptors.js'

const SAMPLER = new URL('../../dist/util/pressure.js', import.meta.url).href

// Takes every descriptor, lets six samples run with none left, gives them back, and says what happened.
const CHILD = `
import { closeSync, openSync } from 'node:fs'
import { pressureSampler } from ${JSON.stringify(SAMPLER)}
const uncaught = []
process.on('uncaughtException', (err) => { uncaught.push(String(err)) })
const sampler = pressureSampler({ maxEventLoopDelayMs: 0, maxHeapBytes: 1, sampleMs: 50 })
await new Promise((resolve) => setTimeout(resolve, 120))
${holdEveryDescriptor(300)}
sampler.stop()
process.stdout.write(JSON.stringify({ code, opened: held.length, uncaught, underPressure: sampler.isUnderPressure() }))
`

t.test('with no descriptor left the sampler keeps sampling, and nothing throws', async (t) => {
  const { stdout } = await promisify(execFile)('prlimit', ['--nofile=64:64', '--', process.execPath, '--input-type=module', '-e', CHILD], { timeout: 30_000 })
  const outcome = JSON.parse(stdout) as { code: string, opened: number, uncaught: string[], underPressure: boolean }
  t.equal(outcome.code, 'EMFILE', `every descriptor taken (${outcome.opened} opened)`)
  t.same(outcome.uncaught, [], 'no sample threw')
  t.ok(outcome.underPressure, 'the heap ceiling (1 byte) is still seen')
})

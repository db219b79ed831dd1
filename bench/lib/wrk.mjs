/**
 * One bounded wrk run against 127.0.0.1 with bench/wrk/pool.lua: the load
 * generator of the side-by-side (`make bench-peer`), as issue 12 measured
 * (wrk -t1, one connection count, a fixed duration), for both stacks alike.
 * @module
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('../wrk/pool.lua', import.meta.url))
/** Seconds a request may take before wrk counts it as a timeout. */
export const WRK_TIMEOUT = 30

/**
 * @typedef {object} WrkOptions
 * @property {string} url base URL, http://127.0.0.1:PORT
 * @property {string} method
 * @property {string} path
 * @property {'body' | 'bearer'} kind each pool line is the JSON body, or the bearer token
 * @property {string} pool file, one line per request
 * @property {'cycle' | 'once'} mode go round the pool, or send each line once
 * @property {number} connections
 * @property {number} seconds
 */

/**
 * @typedef {object} WrkResult
 * @property {number} requests answers received
 * @property {number} rps answers per second
 * @property {number} okRps 2xx answers per second
 * @property {number} p50 latency, ms
 * @property {number} p99 latency, ms
 * @property {number} max latency, ms: the longest any answer took
 * @property {number} errors socket errors, timeouts and non-2xx answers
 * @property {Record<string, number>} statuses answers by status code
 * @property {number} seconds how long the run took
 * @property {boolean} exhausted the pool ran out before the time did (the run is shorter)
 */

/** @param {WrkOptions} options @param {string} [script] @returns {string[]} */
function wrkArgs (options, script = SCRIPT) {
  return ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--timeout', `${WRK_TIMEOUT}s`, '--latency', '-s', script, options.url,
    '--', options.method, options.path, options.kind, options.pool, options.mode, '1']
}

/** The command line, for the report. @param {number} seconds */
export function wrkCommand (seconds) {
  return `wrk ${wrkArgs({ url: 'http://127.0.0.1:PORT', method: 'METHOD', path: 'PATH', kind: 'body', pool: 'POOL', mode: 'cycle', connections: 0, seconds }, 'bench/wrk/pool.lua')
    .join(' ').replace('-c0', '-cN').replace('body POOL cycle', 'body|bearer POOL cycle|once')}`
}

/** @param {WrkOptions} options @returns {Promise<WrkResult>} */
export async function runWrk (options) {
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(options.url)) throw new Error(`wrk only loads 127.0.0.1, not ${options.url}`)
  const child = spawn('wrk', wrkArgs(options), { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk.toString() })
  child.stderr.on('data', (chunk) => { output += chunk.toString() })
  // wrk stops itself; this bounds a wrk that does not.
  const timer = setTimeout(() => child.kill('SIGKILL'), (options.seconds + WRK_TIMEOUT + 10) * 1000)
  const code = await new Promise((resolve, reject) => { child.on('exit', resolve); child.on('error', reject) })
  clearTimeout(timer)
  const line = output.split('\n').find((l) => l.startsWith('WRK-JSON '))
  if (code !== 0 || line === undefined) throw new Error(`wrk exited (${code}) without a summary:\n${output}`)
  const summary = JSON.parse(line.slice('WRK-JSON '.length))
  const ok = Object.entries(summary.statuses).reduce((sum, [code, n]) => sum + (code.startsWith('2') ? Number(n) : 0), 0)
  const answered = Object.values(summary.statuses).reduce((/** @type {number} */ a, n) => a + Number(n), 0)
  const socket = Object.values(summary.socketErrors).reduce((/** @type {number} */ a, n) => a + Number(n), 0)
  return {
    requests: summary.requests,
    rps: Math.round(summary.requests / summary.seconds),
    okRps: Math.round(ok / summary.seconds),
    p50: summary.p50,
    p99: summary.p99,
    max: summary.max,
    errors: answered - ok + socket,
    statuses: summary.statuses,
    seconds: Math.round(summary.seconds * 100) / 100,
    exhausted: summary.exhaustedThreads > 0
  }
}

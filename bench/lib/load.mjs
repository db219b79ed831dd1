/**
 * One bounded autocannon run against 127.0.0.1: stops at `duration` seconds,
 * or earlier once `amount` requests are done (a pool of single-use refresh
 * tokens), whichever comes first, after an unmeasured warm-up.
 * @module
 */
import autocannon from 'autocannon'
import { runCpuSince, runCpuStart } from './proc-cpu.mjs'

/**
 * @typedef {object} LoadOptions
 * @property {string | string[]} url one URL, or several (connections are spread over them)
 * @property {string} [method]
 * @property {string} path
 * @property {Record<string, string>} [headers]
 * @property {string} [body]
 * @property {(request: { headers: Record<string, string>, body?: string, path: string }) => object} [setupRequest] per request (a fresh token, a random user)
 * @property {number} connections
 * @property {number} duration seconds measured
 * @property {number} warmup seconds run first and discarded
 * @property {number} [amount] at most this many requests in the measured run
 * @property {number} [warmupAmount] at most this many requests in the warm-up
 * @property {() => Promise<void>} [beforeMeasured] run after the warm-up, just before the measured run
 * @property {boolean} [shed] the server may shed: a 503 with Retry-After is not an error, and p50/p99 are of the 2xx answers only
 * @property {() => Record<string, number[]>} [cpu] the process trees whose CPU the measured run reports (name → root pids, read when it starts)
 */

/**
 * @typedef {object} LoadResult
 * @property {number} requests completed requests
 * @property {number} rps successful answers per second (2xx and the statuses asked for): a failed or shed answer is no credit
 * @property {number} p50 latency, ms
 * @property {number} p99 latency, ms (with `shed`: of the 2xx answers)
 * @property {number} [p99All] with `shed`: latency of every answer, ms
 * @property {number} [shedP99] with `shed`: p99 latency of the 503 answers, ms (0 when there were none)
 * @property {number} [shed] with `shed`: answers 503 with Retry-After
 * @property {Record<string, number>} [shedByRetryAfter] with `shed`: those answers by their Retry-After (seconds)
 * @property {number} [queueWaitMs] where the scenario scraped the instance's hashing queue around the run: the longest wait in it, ms (queue-wait.mjs)
 * @property {number} errors connection errors, timeouts, non-2xx answers (304 counts as success where asked; with `shed`, 503 with Retry-After)
 * @property {Record<string, number>} statuses answers by status code
 * @property {number} seconds how long the measured run took
 * @property {import('./proc-cpu.mjs').RunCpu} [cpu] with `cpu`: what the machine's cores did during the measured run
 */

/**
 * What a shedding run needs beyond autocannon's summary: the latency of
 * each 2xx answer and of each 503, and how many 503 answers carried
 * Retry-After.
 */
function shedTally () {
  /** @type {number[]} */
  const answered = []
  /** @type {number[]} */
  const shedLatencies = []
  /** @type {Record<string, number>} 503 answers by their Retry-After */
  const byRetryAfter = {}
  let withRetryAfter = 0
  return {
    answered,
    shedLatencies,
    byRetryAfter,
    get withRetryAfter () { return withRetryAfter },
    /** @param {number} status @param {Record<string, string>} headers */
    onResponse: (status, headers) => {
      const retryAfter = headers['retry-after']
      if (status !== 503 || retryAfter === undefined) return
      withRetryAfter++
      byRetryAfter[retryAfter] = (byRetryAfter[retryAfter] ?? 0) + 1
    },
    /** @param {number} status @param {number} ms */
    // Whole milliseconds, as autocannon reports its own percentiles.
    onLatency: (status, ms) => {
      if (status >= 200 && status < 300) answered.push(Math.round(ms))
      else if (status === 503) shedLatencies.push(Math.round(ms))
    }
  }
}

/** The p-th percentile of some latencies, ms (0 when there are none). @param {number[]} values @param {number} p */
export function percentile (values, p) {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0
}

/** @param {LoadOptions} options @param {number} seconds @param {number | undefined} amount @param {ReturnType<typeof shedTally>} [tally] */
function once (options, seconds, amount, tally) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const instance = autocannon({
      url: options.url,
      connections: options.connections,
      pipelining: 1,
      duration: seconds,
      ...(amount === undefined ? {} : { amount }),
      timeout: 10,
      // The gateway's certificate is self-signed, made for this run.
      ...(String(options.url).startsWith('https:') ? { tlsOptions: { rejectUnauthorized: false } } : {}),
      requests: [{
        method: options.method ?? 'GET',
        path: options.path,
        headers: options.headers ?? {},
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(options.setupRequest === undefined ? {} : { setupRequest: options.setupRequest }),
        ...(tally === undefined ? {} : { onResponse: (/** @type {number} */ status, /** @type {unknown} */ _body, /** @type {unknown} */ _context, /** @type {Record<string, string>} */ headers) => tally.onResponse(status, headers) })
      }]
    }, (err, result) => {
      clearTimeout(timer)
      if (err) reject(err)
      else resolve({ result, seconds: Number(process.hrtime.bigint() - started) / 1e9 })
    })
    // `amount` overrides `duration` in autocannon: the time bound is ours.
    const timer = setTimeout(() => instance.stop(), (seconds + 1) * 1000)
    if (tally !== undefined) instance.on('response', (/** @type {unknown} */ _client, /** @type {number} */ status, /** @type {number} */ _bytes, /** @type {number} */ ms) => tally.onLatency(status, ms))
  })
}

/** @param {LoadOptions} options @param {number[]} [ok] statuses that count as success besides 2xx @returns {Promise<LoadResult>} */
export async function runLoad (options, ok = []) {
  if (options.warmup > 0) await once(options, options.warmup, options.warmupAmount)
  await options.beforeMeasured?.()
  const tally = options.shed ? shedTally() : undefined
  const trees = options.cpu?.()
  const cpuStart = trees === undefined ? undefined : runCpuStart()
  const { result, seconds } = await once(options, options.duration, options.amount, tally)
  const cpu = trees === undefined || cpuStart === undefined ? {} : { cpu: runCpuSince(cpuStart, trees) }
  /** @type {Record<string, number>} */
  const statuses = {}
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = stat.count
  const accepted = ok.reduce((sum, code) => sum + (statuses[String(code)] ?? 0), 0) + (tally?.withRetryAfter ?? 0)
  const elapsed = Math.min(seconds, result.duration || seconds)
  const common = { errors: result.errors + result.timeouts + result.mismatches + result.non2xx - accepted, statuses, seconds: Math.round(elapsed * 100) / 100, ...cpu }
  if (tally === undefined) {
    const requests = result.requests.total
    const succeeded = (result['2xx'] ?? 0) + ok.reduce((sum, code) => sum + (statuses[String(code)] ?? 0), 0)
    return { requests, rps: Math.round(succeeded / elapsed), p50: result.latency.p50, p99: result.latency.p99, ...common }
  }
  // Shedding: the rate and latency that count are the answered requests'; the shed ones are counted beside.
  const requests = tally.answered.length
  return {
    requests,
    rps: Math.round(requests / elapsed),
    p50: percentile(tally.answered, 50),
    p99: percentile(tally.answered, 99),
    p99All: result.latency.p99,
    shedP99: percentile(tally.shedLatencies, 99),
    shed: tally.withRetryAfter,
    shedByRetryAfter: tally.byRetryAfter,
    ...common
  }
}

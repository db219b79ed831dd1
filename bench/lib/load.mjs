/**
 * One bounded autocannon run against 127.0.0.1: stops at `duration` seconds,
 * or earlier once `amount` requests are done (a pool of single-use refresh
 * tokens), whichever comes first, after an unmeasured warm-up.
 * @module
 */
import autocannon from 'autocannon'

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
 */

/**
 * @typedef {object} LoadResult
 * @property {number} requests completed requests
 * @property {number} rps completed requests per second
 * @property {number} p50 latency, ms
 * @property {number} p99 latency, ms
 * @property {number} errors connection errors, timeouts, non-2xx answers (304 counts as success where asked)
 * @property {Record<string, number>} statuses answers by status code
 * @property {number} seconds how long the measured run took
 */

/** @param {LoadOptions} options @param {number} seconds @param {number | undefined} amount */
function once (options, seconds, amount) {
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
        ...(options.setupRequest === undefined ? {} : { setupRequest: options.setupRequest })
      }]
    }, (err, result) => {
      clearTimeout(timer)
      if (err) reject(err)
      else resolve({ result, seconds: Number(process.hrtime.bigint() - started) / 1e9 })
    })
    // `amount` overrides `duration` in autocannon: the time bound is ours.
    const timer = setTimeout(() => instance.stop(), (seconds + 1) * 1000)
  })
}

/** @param {LoadOptions} options @param {number[]} [ok] statuses that count as success besides 2xx @returns {Promise<LoadResult>} */
export async function runLoad (options, ok = []) {
  if (options.warmup > 0) await once(options, options.warmup, options.warmupAmount)
  const { result, seconds } = await once(options, options.duration, options.amount)
  /** @type {Record<string, number>} */
  const statuses = {}
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = stat.count
  const accepted = ok.reduce((sum, code) => sum + (statuses[String(code)] ?? 0), 0)
  const requests = result.requests.total
  const elapsed = Math.min(seconds, result.duration || seconds)
  return {
    requests,
    rps: Math.round(requests / elapsed),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts + result.mismatches + result.non2xx - accepted,
    statuses,
    seconds: Math.round(elapsed * 100) / 100
  }
}

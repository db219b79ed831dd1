/**
 * Physical limits: what this machine's cores allow for the two pieces of work
 * no design can avoid, with nothing else around them. RSA-2048 RS256
 * signatures with node:crypto on every core (one worker thread per core), and
 * `openssl speed -multi` for reference; a refresh signs twice, so signing
 * alone caps refresh at half the signing rate. argon2id verifies at Tessera's
 * parameters, one per core, in a process of its own. The ceilings in
 * ceilings.mjs measure Tessera's design; these measure the hardware.
 *
 * Run as a script (`node physical.mjs argon2 CORES SECONDS`) it measures the
 * argon2 rate and prints it as JSON: its own process, so libuv's pool can have
 * one thread per core whatever the harness has already used.
 * @module
 */
import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'

const SELF = fileURLToPath(import.meta.url)
const OPENSSL = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find((f) => existsSync(f))

/** Ceilings measured for reading beside the ones a scenario is judged against. */
export const PHYSICAL_BESIDE = {
  refresh: ['sign-all-cores', 'refresh-signing-limit', 'sign-openssl'],
  login: ['argon2-all-cores']
}

// One worker: waits for the start time the harness gives every worker, signs
// an access-token-sized input until its own deadline, reports the count.
const SIGNER = `
const { parentPort, workerData } = require('node:worker_threads')
const { createPrivateKey, sign } = require('node:crypto')
const key = createPrivateKey(workerData.pem)
const input = Buffer.from(workerData.input)
sign('sha256', input, key)
parentPort.once('message', ({ start, seconds }) => {
  while (Date.now() < start) {}
  const began = performance.now()
  const deadline = began + seconds * 1000
  let done = 0
  while (performance.now() < deadline) { sign('sha256', input, key); done++ }
  parentPort.postMessage(done / ((performance.now() - began) / 1000))
})
parentPort.postMessage('ready')
`

/**
 * RS256 signatures per second over `threads` worker threads signing at once
 * (synchronous node:crypto, a KeyObject each): the sum of their rates.
 * @param {number} bits @param {number} threads @param {number} seconds
 */
export async function signingAllCores (bits, threads, seconds) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' })
  const header = Buffer.from('{"alg":"RS256","kid":"bench","typ":"at+jwt"}').toString('base64url')
  const claims = Buffer.from(JSON.stringify({ iss: 'http://tessera.bench', sub: randomUUID(), aud: 'api', exp: 2e9, iat: 2e9 - 300, jti: randomUUID(), client_id: 'tessera', scope: 'read write', sid: randomUUID() })).toString('base64url')
  const workers = Array.from({ length: threads }, () => new Worker(SIGNER, { eval: true, execArgv: [], workerData: { pem, input: `${header}.${claims}` } }))
  try {
    await Promise.all(workers.map((w) => new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })))
    const rates = workers.map((w) => new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) }))
    const start = Date.now() + 50
    for (const w of workers) w.postMessage({ start, seconds })
    const total = (await Promise.all(rates)).reduce((/** @type {number} */ sum, rate) => sum + /** @type {number} */ (rate), 0)
    return Math.round(total)
  } finally {
    await Promise.all(workers.map(async (w) => await w.terminate()))
  }
}

/**
 * `openssl speed -multi N rsaBITS` for `seconds`: sign/s over every core, for
 * reference (OpenSSL's own loop, no JWT around it). Undefined without openssl.
 * @param {number} bits @param {number} processes @param {number} seconds
 * @returns {Promise<number | undefined>}
 */
export async function opensslSigning (bits, processes, seconds) {
  if (OPENSSL === undefined) return undefined
  const { stdout } = await promisify(execFile)(OPENSSL, ['speed', '-seconds', String(Math.max(1, Math.round(seconds))), '-multi', String(processes), `rsa${bits}`], { timeout: (seconds * 6 + 30) * 1000 })
  return parseOpensslSpeed(stdout, bits)
}

/**
 * The sign/s column of `openssl speed rsaBITS`: the header names the columns
 * (3.0 has sign, verify, sign/s, verify/s; later versions add more), the row
 * `rsa BITS bits` holds them in the same order.
 * @param {string} output @param {number} bits
 */
export function parseOpensslSpeed (output, bits) {
  const lines = output.split('\n')
  const rowIndex = lines.findIndex((l) => l.trim().startsWith(`rsa ${bits} bits`))
  const head = lines.slice(0, Math.max(0, rowIndex)).reverse().find((l) => l.includes('sign/s'))
  if (rowIndex < 0 || head === undefined) throw new Error(`openssl speed printed no rsa ${bits} row:\n${output}`)
  const column = head.trim().split(/\s+/).indexOf('sign/s')
  const cells = lines[rowIndex].trim().replace(`rsa ${bits} bits`, '').trim().split(/\s+/)
  const rate = Number(cells[column])
  if (!Number.isFinite(rate)) throw new Error(`openssl speed: no sign/s in "${lines[rowIndex]}"`)
  return Math.round(rate)
}

/**
 * argon2id verifies per second at Tessera's parameters, `cores` at once, in a
 * child process whose libuv pool has a thread per core.
 * @param {number} cores @param {number} seconds
 */
export async function argon2AllCores (cores, seconds) {
  const child = spawn(process.execPath, [SELF, 'argon2', String(cores), String(seconds)], {
    env: { PATH: process.env.PATH ?? '', UV_THREADPOOL_SIZE: String(Math.max(4, cores)) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk.toString() })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  if (code !== 0) throw new Error(`the argon2 measurement exited (${code})`)
  return /** @type {number} */ (JSON.parse(output).rate)
}

/**
 * The physical ceilings as harness definitions (ceiling-definitions.mjs),
 * `sign-openssl` only where openssl is installed.
 * @param {{ keyBits: number, cores: number, seconds: number }} options
 * @returns {Record<string, import('./ceiling-registry.mjs').CeilingDefinition>}
 */
export function physicalCeilings ({ keyBits, cores, seconds }) {
  return {
    'sign-all-cores': {
      what: `physical: node:crypto.sign RS256 (${keyBits}-bit) on every core, one worker thread per core (${cores}) signing synchronously, nothing else running`,
      measure: async () => await signingAllCores(keyBits, cores, seconds)
    },
    'refresh-signing-limit': {
      what: 'physical: sign-all-cores ÷ 2, the refreshes per second signing alone allows (a refresh signs an access and a refresh token)',
      from: ['sign-all-cores'],
      combine: (signs) => Math.round(signs / 2)
    },
    ...(OPENSSL === undefined
      ? {}
      : {
          'sign-openssl': {
            what: `physical, for reference: \`openssl speed -multi ${cores} rsa${keyBits}\` sign/s (OpenSSL's own loop, every core)`,
            measure: async () => /** @type {number} */ (await opensslSigning(keyBits, cores, seconds))
          }
        }),
    'argon2-all-cores': {
      what: `physical: argon2id verifies at Tessera's parameters, one per core (${cores}) at once, in a process of its own with a pool thread per core`,
      measure: async () => await argon2AllCores(cores, seconds)
    }
  }
}

/** What a scenario is physically bounded by: the limit beside its ceiling. */
const BOUND_BY = { refresh: 'refresh-signing-limit', login: 'argon2-all-cores' }

/**
 * Each scenario with a physical bound that was measured: its req/s as a
 * fraction of that bound, for the report.
 * @param {{ name: string, rps: number }[]} scenarios @param {Record<string, { rate: number }>} ceilings
 */
export function physicalLimits (scenarios, ceilings) {
  return scenarios.flatMap((s) => {
    const limit = /** @type {Record<string, string>} */ (BOUND_BY)[s.name]
    const rate = limit === undefined ? undefined : ceilings[limit]?.rate
    if (rate === undefined) return []
    return [{ scenario: s.name, rps: s.rps, limit, rate, ratio: Math.round((s.rps / rate) * 1000) / 1000 }]
  })
}

if (process.argv[1] === SELF && process.argv[2] === 'argon2') {
  const { default: argon2 } = await import('argon2')
  const { ARGON2_PARAMS } = await import('./service.mjs')
  const cores = Number(process.argv[3])
  const seconds = Number(process.argv[4])
  const hash = await argon2.hash('correct horse battery staple', ARGON2_PARAMS)
  await argon2.verify(hash, 'correct horse battery staple')
  const began = performance.now()
  const deadline = began + seconds * 1000
  let done = 0
  await Promise.all(Array.from({ length: cores }, async () => {
    while (performance.now() < deadline) {
      if (!await argon2.verify(hash, 'correct horse battery staple')) throw new Error('argon2 verify failed')
      done++
    }
  }))
  process.stdout.write(`${JSON.stringify({ rate: Math.round(done / ((performance.now() - began) / 1000)) })}\n`)
}

// @ts-check
/**
 * The client_credentials scenario and its ceiling: one service token costs one
 * signature, one indexed read of its client row and one request, nothing
 * written (services/auth/src/grants/client-credentials.ts). The ceiling keeps
 * the read, issue 14's definition of the work, though a worker now reads its
 * client once and keeps it while it hears every change (clients/cache.ts):
 * the scenario can pass 100 % of it. Kept apart from the other scenarios so
 * it can be added or dropped as one piece.
 * @module
 */
import { ipcRoundTripRate } from './ipc.mjs'
import { runLoad } from './load.mjs'
import { base } from './scenarios.mjs'
import { CLIENT_READ_SQL, connect, createClient } from './service.mjs'

const BENCH_CLIENT = 'bench-service'
const BENCH_RESOURCE = 'urn:tessera:notes'

/** Registers the confidential client the scenario authenticates as; returns its secret. @param {string} url */
export async function registerBenchClient (url) {
  const connection = connect(url, 1)
  try {
    const created = await createClient(connection.db, {
      clientId: BENCH_CLIENT, confidential: true, grants: ['client_credentials'], scopes: ['notes:read'], resources: [BENCH_RESOURCE]
    }, new Date(), { actor: 'bench' })
    if (created.secret === undefined) throw new Error(`${BENCH_CLIENT} already exists in the benchmark database`)
    return created.secret
  } finally {
    await connection.close()
  }
}

/**
 * Client lookups per second: clients/authenticate.ts's one read by primary
 * key, its very statement (CLIENT_READ_SQL, prepared once per connection under
 * its name as Tessera sends it), `inFlight` at once (the scenario's
 * connections) queued on a pool of `pool` connections (Tessera's instance
 * pool), as the server runs it under the scenario's load.
 * @param {string} url @param {number} inFlight @param {number} pool @param {number} seconds @param {import('./ceiling-registry.mjs').CpuWindow} [window]
 */
async function clientReadRate (url, inFlight, pool, seconds, window) {
  const connection = connect(url, pool)
  try {
    // Connections are made (SCRAM costs milliseconds each) before the clock starts.
    const clients = await Promise.all(Array.from({ length: pool }, async () => await connection.pool.connect()))
    for (const client of clients) client.release()
    window?.open()
    const deadline = performance.now() + seconds * 1000
    const started = performance.now()
    let done = 0
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await connection.pool.query({ name: 'tessera_client_read', text: CLIENT_READ_SQL, values: [BENCH_CLIENT] })
        done++
      }
    }))
    window?.close()
    return Math.round(done / ((performance.now() - started) / 1000))
  } finally {
    await connection.close()
  }
}

/** One signature, one read, one request, one after another: 1/(1/signs + 1/reads + 1/requests). @param {{ signs: number, reads: number, requests: number }} parts */
function clientCredentialsCeiling ({ signs, reads, requests }) {
  return Math.round(1 / (1 / signs + 1 / reads + 1 / requests))
}

/**
 * The ceilings' definitions (ceiling-definitions.mjs).
 * @param {{ url: string, seconds: number, inFlight: number, pool: number }} options
 * @returns {Record<string, import('./ceiling-registry.mjs').CeilingDefinition>}
 */
export function clientCredentialsCeilings ({ url, seconds, inFlight, pool }) {
  return {
    'client-read': {
      what: `the client lookup (clients by primary key, clients/authenticate.ts's CLIENT_READ_SQL as a named statement), ${inFlight} at once on a pool of ${pool} (the scenario's connections on Tessera's instance pool)`,
      measure: async (_round, window) => await clientReadRate(url, inFlight, pool, seconds, window)
    },
    'client-credentials-combined': {
      what: 'one client_credentials token = 1 signature (sign-jose) + 1 client lookup (client-read) + 1 request (bare-token), one after another: 1/(1/sign + 1/read + 1/request)',
      from: ['sign-jose', 'client-read', 'bare-token'],
      combine: (signs, reads, requests) => clientCredentialsCeiling({ signs, reads, requests })
    },
    'ipc-round-trip': {
      what: `Node IPC round trips between two processes, ${inFlight} in flight, the rate-limit store's message: what each /oauth/token request pays to count against the instance's per-IP limit in the primary (cluster/rate-limit.ts): for reading`,
      measure: async () => await ipcRoundTripRate(inFlight, seconds)
    },
    'client-credentials-ipc': {
      what: 'client-credentials-combined with the IPC round trip added, one after another: 1/(1/sign + 1/read + 1/request + 1/ipc), what the design allows with the instance-wide per-IP count: for reading',
      from: ['sign-jose', 'client-read', 'bare-token', 'ipc-round-trip'],
      combine: (signs, reads, requests, ipc) => Math.round(1 / (1 / clientCredentialsCeiling({ signs, reads, requests }) + 1 / ipc))
    }
  }
}

/**
 * @param {() => Promise<string>} secret the bench client's secret, registered once
 * @returns {import('./scenarios.mjs').Scenario}
 */
export function clientCredentialsScenario (secret) {
  return {
    name: 'client-credentials',
    what: `POST /oauth/token grant_type=client_credentials with client_secret_basic and resource=${BENCH_RESOURCE}`,
    ceiling: 'client-credentials-combined',
    target: { ratio: 0.60, source: 'issue 14' },
    scales: true,
    run: async (ctx, urls, round, beforeMeasured) => {
      const basic = `Basic ${Buffer.from(`${BENCH_CLIENT}:${await secret()}`).toString('base64')}`
      return await runLoad({
        ...base(ctx, urls, round, beforeMeasured),
        connections: ctx.settings.connections,
        method: 'POST',
        path: '/oauth/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
        body: `grant_type=client_credentials&resource=${encodeURIComponent(BENCH_RESOURCE)}`
      })
    }
  }
}

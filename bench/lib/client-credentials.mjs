/**
 * The client_credentials scenario and its ceiling: one service token costs one
 * signature, one indexed read of its client row and one request, nothing
 * written (services/auth/src/grants/client-credentials.ts). Kept apart from the other
 * scenarios so it can be added or dropped as one piece.
 * @module
 */
import { connect } from '../../services/auth/dist/db/connect.js'
import { createClient } from '../../services/auth/dist/clients/register.js'
import { runLoad } from './load.mjs'

export const BENCH_CLIENT = 'bench-service'
export const BENCH_RESOURCE = 'urn:tessera:notes'

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
 * key, in Kysely's own text, `concurrency` at once on a pool of that size.
 * @param {string} url @param {number} concurrency @param {number} seconds
 */
export async function clientReadRate (url, concurrency, seconds) {
  const connection = connect(url, concurrency)
  try {
    const { sql, parameters } = connection.db.selectFrom('clients')
      .select(['client_id', 'confidential', 'grants', 'scopes', 'resources', 'secret_digest', 'previous_secret_digest', 'previous_secret_expires_at', 'disabled_at'])
      .where('client_id', '=', BENCH_CLIENT).compile()
    const clients = await Promise.all(Array.from({ length: concurrency }, async () => await connection.pool.connect()))
    const deadline = performance.now() + seconds * 1000
    const started = performance.now()
    let done = 0
    await Promise.all(clients.map(async (client) => {
      try {
        while (performance.now() < deadline) {
          await client.query(sql, [...parameters])
          done++
        }
      } finally {
        client.release()
      }
    }))
    return Math.round(done / ((performance.now() - started) / 1000))
  } finally {
    await connection.close()
  }
}

/** One signature, one read, one request, one after another: 1/(1/signs + 1/reads + 1/requests). @param {{ signs: number, reads: number, requests: number }} parts */
export function clientCredentialsCeiling ({ signs, reads, requests }) {
  return Math.round(1 / (1 / signs + 1 / reads + 1 / requests))
}

/**
 * The ceiling's definition, for run.mjs's table.
 * @param {{ url: string, seconds: number, ceiling: (name: string) => Promise<number> }} options
 */
export function clientCredentialsCeilings ({ url, seconds, ceiling }) {
  return {
    'client-read': {
      what: 'the client lookup (clients by primary key, Kysely\'s text), 20 at once on a pool of 20',
      measure: async () => await clientReadRate(url, 20, seconds)
    },
    'client-credentials-combined': {
      what: 'one client_credentials token = 1 signature (sign-jose) + 1 client lookup (client-read) + 1 request (bare-token), one after another: 1/(1/sign + 1/read + 1/request)',
      measure: async () => clientCredentialsCeiling({ signs: await ceiling('sign-jose'), reads: await ceiling('client-read'), requests: await ceiling('bare-token') })
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
    target: 0.60,
    scales: true,
    run: async (ctx, urls) => {
      const basic = `Basic ${Buffer.from(`${BENCH_CLIENT}:${await secret()}`).toString('base64')}`
      return await runLoad({
        url: urls.length === 1 ? urls[0] : urls,
        duration: ctx.settings.duration,
        warmup: ctx.settings.warmup,
        connections: ctx.settings.connections,
        method: 'POST',
        path: '/oauth/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
        body: `grant_type=client_credentials&resource=${encodeURIComponent(BENCH_RESOURCE)}`
      })
    }
  }
}

/**
 * Liveness and readiness for orchestrators. Readiness: the database answers
 * and takes writes, and a signing key is loaded. A database that answers
 * reads only refuses every login, refresh and sign-up, so the instance is
 * not ready, as with the database down (decisions.md, "Not ready on a
 * database that takes no writes").
 * @module
 */
import { Type } from '@sinclair/typebox'
import type { App, Deps } from '../http/app-types.js'
import { ProblemError } from '../errors.js'
import { databaseTakesWrites } from '../db/connect.js'

export function registerHealthRoutes (app: App, deps: Deps): void {
  app.get('/healthz', { schema: { tags: ['health'], summary: 'Liveness: the process answers (each instance, on its own address: the gateway does not route it)', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }))

  app.get('/readyz', {
    schema: { tags: ['health'], summary: 'Readiness: the database answers and takes writes, and a signing key is loaded, 503 otherwise (each instance, on its own address: the gateway does not route it)', response: { 200: Type.Object({ status: Type.Literal('ready') }) } }
  }, async () => {
    let takesWrites: boolean
    try {
      takesWrites = await databaseTakesWrites(deps.db)
    } catch (cause) {
      // Logged, not sent: why it is out of reach (refused, a wrong password, gone), which the orchestrator's probe alone would never tell.
      throw new ProblemError(503, 'Service Unavailable', { publicDetail: 'the database is not reachable', detail: cause instanceof Error ? cause.message : String(cause), retryAfter: 5, cause })
    }
    if (!takesWrites) {
      throw new ProblemError(503, 'Service Unavailable', { publicDetail: 'the database takes no writes (a standby, or read-only)', retryAfter: 5 })
    }
    if (deps.keyring.signer === undefined) {
      throw new ProblemError(503, 'Service Unavailable', { publicDetail: 'no signing key is loaded', retryAfter: 5 })
    }
    return { status: 'ready' as const }
  })
}

/**
 * Liveness and readiness for orchestrators. Readiness: the database answers
 * and a signing key is loaded.
 * @module
 */
import { Type } from '@sinclair/typebox'
import type { App, Deps } from '../http/app-types.js'
import { ProblemError } from '../errors.js'
import { pingDatabase } from '../db/connect.js'

export function registerHealthRoutes (app: App, deps: Deps): void {
  app.get('/healthz', { schema: { tags: ['health'], summary: 'Liveness: the process answers (each instance, on its own address: the gateway does not route it)', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }))

  app.get('/readyz', {
    schema: { tags: ['health'], summary: 'Readiness: the database answers and a signing key is loaded, 503 otherwise (each instance, on its own address: the gateway does not route it)', response: { 200: Type.Object({ status: Type.Literal('ready') }) } }
  }, async () => {
    try {
      await pingDatabase(deps.db)
    } catch (cause) {
      throw new ProblemError(503, 'Service Unavailable', { publicDetail: 'the database is not reachable', retryAfter: 5, cause })
    }
    if (deps.keyring.signer === undefined) {
      throw new ProblemError(503, 'Service Unavailable', { publicDetail: 'no signing key is loaded', retryAfter: 5 })
    }
    return { status: 'ready' as const }
  })
}

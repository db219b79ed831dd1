/**
 * GET /metrics for Prometheus. Internal: the gateway does not route it.
 * @module
 */
import type { App, Deps } from '../app.js'

export function registerMetricsRoutes (app: App, deps: Deps): void {
  app.get('/metrics', async (_request, reply) =>
    await reply.type(deps.metrics.registry.contentType).send(await deps.metrics.render()))
}

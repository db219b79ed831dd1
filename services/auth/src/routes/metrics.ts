/**
 * GET /metrics for Prometheus. Internal: the gateway does not route it. With
 * TESSERA_METRICS_PORT it moves to a listener of its own, which a network
 * policy can keep apart from client traffic.
 * @module
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import type { App, Deps } from '../http/app-types.js'
import { targetPath } from '../http/target-path.js'

export interface MetricsListener {
  url: string
  close: () => Promise<void>
}

/** Serves GET /metrics on host:port (what `render` gives: in a served instance, every process's), its target in origin- or absolute-form; anything else is a 404. */
export async function listenForMetrics (registry: Registry, render: () => Promise<string>, host: string, port: number): Promise<MetricsListener> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || targetPath(request.url ?? '') !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
      return
    }
    render().then((body) => {
      response.writeHead(200, { 'content-type': registry.contentType }).end(body)
    }, () => {
      response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n')
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  return {
    url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics`,
    close: async () => { await new Promise<void>((resolve) => server.close(() => resolve())) }
  }
}

export function registerMetricsRoutes (app: App, deps: Deps): void {
  // Not part of the public API: hidden from /openapi.json.
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    await reply.type(deps.metrics.registry.contentType).send(await deps.metrics.render()))
}

/**
 * Answers about one person (profile, sessions, a new account): no shared or
 * browser cache may keep them (RFC 9111 §5.2.2.5). Set by the handler, not by
 * an onSend hook, so these routes keep only the hooks they need
 * (docs/decisions.md, "Only the hooks a route needs").
 * @module
 */
import type { FastifyReply } from 'fastify'

export function forbidCaching (reply: FastifyReply): void {
  void reply.header('cache-control', 'no-store')
}

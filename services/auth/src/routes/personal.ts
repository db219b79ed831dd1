/**
 * onSend hook for answers about one person (profile, sessions, a new
 * account): no shared or browser cache may keep them (RFC 9111 §5.2.2.5).
 * @module
 */
import type { FastifyReply, FastifyRequest } from 'fastify'

export async function personal (_request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  void reply.header('cache-control', 'no-store')
  return payload
}

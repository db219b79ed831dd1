/**
 * What the domain needs to know about who asked: the client IP as the trusted
 * gateway gave it, the user agent, the request id.
 * @module
 */
import type { FastifyRequest } from 'fastify'
import type { RequestContext } from '../audit/record.js'
import { clientAddress } from '../http/client-address.js'

export function requestContext (request: FastifyRequest): RequestContext {
  const userAgent = request.headers['user-agent']
  return { ip: clientAddress(request), userAgent: typeof userAgent === 'string' ? userAgent : undefined, requestId: request.id }
}

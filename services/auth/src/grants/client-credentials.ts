/**
 * grant_type=client_credentials (RFC 6749 §4.4): a confidential client's own
 * access token. No session and no refresh token; `sub` is the client_id
 * (RFC 9068 §2.2). The cost is the client lookup and one signature: nothing
 * is written.
 * @module
 */
import type { RequestContext } from '../audit/record.js'
import type { Issuer } from './issue.js'
import { grantedScope } from '../sessions/scope.js'
import { mintAccessToken } from '../tokens/mint.js'
import { authenticateClient, requireGrant } from '../clients/authenticate.js'
import type { ClientCredentials } from '../clients/credentials.js'
import { audienceFor, requestedResource } from '../clients/resource.js'

export interface ClientCredentialsInput {
  credentials: ClientCredentials
  scope: string | undefined
  resource: string | string[] | undefined
  now: Date
  context: RequestContext
}

export interface ClientAccessToken {
  accessToken: string
  expiresIn: number
  scope: string
}

export async function clientCredentialsGrant (deps: Issuer, input: ClientCredentialsInput): Promise<ClientAccessToken> {
  const resource = requestedResource(input.resource, deps.config.issuer)
  const client = await authenticateClient(deps, input)
  requireGrant(client, 'client_credentials')
  const audience = audienceFor(resource, client.resources)
  const scope = grantedScope(input.scope, client.scopes)
  const minted = mintAccessToken(deps.config, deps.keyring, { subject: client.clientId, sessionId: undefined, clientId: client.clientId, scope, audience, now: input.now })
  return { accessToken: minted.token, expiresIn: minted.expiresIn, scope }
}

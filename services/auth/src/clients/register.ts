/**
 * Registering clients: `tessera clients create`, and the default public
 * client that every start makes sure of (so a password grant without
 * client_id works on a fresh database as it always did).
 * @module
 */
import { NAMED_ACTORS } from '../audit/actors.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { CLIENT_ID_PATTERN, SCOPE_TOKEN_PATTERN, SCOPES_MAX_LENGTH } from '../config.js'
import type { Db, GrantType } from '../db/database.js'
import { isResourceIndicator, namesIssuer } from './resource.js'
import { generateSecret } from './secret.js'
import { TesseraError } from '../errors.js'
import { UUID_TEXT } from '../util/uuid.js'

const GRANT_TYPES: readonly GrantType[] = ['password', 'refresh_token', 'client_credentials']
export const isGrantType = (value: string): value is GrantType => (GRANT_TYPES as readonly string[]).includes(value)

export interface NewClient {
  clientId: string
  confidential: boolean
  grants: string[]
  scopes: string[]
  resources: string[]
}

/** A registration that breaks a rule; the message names the field. */
export class ClientRuleError extends TesseraError {
  readonly code = 'ERR_CLIENT_RULE'
}

/**
 * The rule every client id meets, past or future (clients.client_id's CHECK
 * is the same pattern): an id outside it names no client. The rules below it
 * came later, so a client registered before them may still break them.
 */
export function acceptableClientId (clientId: string): void {
  if (!CLIENT_ID_PATTERN.test(clientId)) throw new ClientRuleError('client_id: must be 1 to 64 of A-Z a-z 0-9 . _ -')
}

function checked (client: NewClient): NewClient & { grants: GrantType[] } {
  acceptableClientId(client.clientId)
  // A client's own tokens (client_credentials) carry its id as `sub`: shaped like a user id, a resource could take it for one (RFC 9068 §5).
  if (UUID_TEXT.test(client.clientId)) throw new ClientRuleError('client_id: must not look like a UUID, which a user id is (a client_credentials token\'s sub is its client_id)')
  // A client is named as the actor of what it does in the audit trail: it must not read as one of the trail's own.
  if (NAMED_ACTORS.has(client.clientId.toLowerCase())) throw new ClientRuleError(`client_id: ${client.clientId} names an actor of the audit trail (${[...NAMED_ACTORS].join(', ')}); choose another`)
  const unknown = client.grants.filter((g) => !isGrantType(g))
  if (unknown.length > 0 || client.grants.length === 0) throw new ClientRuleError(`grants: expected some of ${GRANT_TYPES.join(', ')}`)
  const grants = [...new Set(client.grants)] as GrantType[]
  if (!client.confidential && grants.includes('client_credentials')) throw new ClientRuleError('grants: a public client cannot use client_credentials; add --confidential')
  // Every token carries the client's scopes when none are asked for: with none, that would be `scope: ""`, which names nothing (RFC 6749 §3.3: one or more scope-tokens).
  if (client.scopes.length === 0) throw new ClientRuleError('scopes: expected at least one scope (leave out --scopes for TESSERA_SCOPES)')
  const badScope = client.scopes.find((s) => !SCOPE_TOKEN_PATTERN.test(s))
  if (badScope !== undefined) throw new ClientRuleError(`scopes: ${JSON.stringify(badScope)} is not a scope token (RFC 6749 §3.3: printable ASCII other than space, double quote and backslash)`)
  const scopesLength = [...new Set(client.scopes)].join(' ').length
  if (scopesLength > SCOPES_MAX_LENGTH) throw new ClientRuleError(`scopes: ${scopesLength} characters in all, at most ${SCOPES_MAX_LENGTH}: every token of the client carries them, and a token must fit in an Authorization header`)
  const badResource = client.resources.find((r) => !isResourceIndicator(r))
  if (badResource !== undefined) throw new ClientRuleError(`resources: ${JSON.stringify(badResource)} is not an absolute URI without a fragment (RFC 8707)`)
  return { ...client, grants, scopes: [...new Set(client.scopes)], resources: [...new Set(client.resources)] }
}

/**
 * A resource equal to the issuer is refused by every grant (`invalid_target`:
 * it is the `aud` of refresh tokens), so registering it would only defer the
 * refusal to the client's first request.
 */
export function refuseIssuerResource (resources: readonly string[], issuer: string): void {
  const issuerResource = resources.find((r) => namesIssuer(r, issuer))
  if (issuerResource !== undefined) {
    throw new ClientRuleError(`resources: ${issuerResource} is TESSERA_ISSUER, the audience of refresh tokens; every grant refuses it as a resource (invalid_target): name the API's own URI`)
  }
}

/** Returns the secret (confidential clients only; it is never stored), or undefined when the id is taken. */
export async function createClient (db: Db, input: NewClient, now: Date, context: RequestContext & { actor: string }): Promise<{ created: boolean, secret: string | undefined }> {
  const client = checked(input)
  const generated = client.confidential ? generateSecret() : undefined
  return await db.transaction().execute(async (trx) => {
    const inserted = await trx.insertInto('clients').values({
      client_id: client.clientId,
      confidential: client.confidential,
      grants: client.grants,
      scopes: client.scopes,
      resources: client.resources,
      secret_digest: generated?.digest ?? null,
      created_at: now
    }).onConflict((oc) => oc.column('client_id').doNothing()).returning('client_id').executeTakeFirst()
    if (inserted === undefined) return { created: false, secret: undefined }
    await recordAudit(trx, {
      type: 'client.created',
      ...context,
      detail: { client_id: client.clientId, confidential: client.confidential, grants: client.grants.join(' '), scopes: client.scopes.join(' '), resources: client.resources.join(' ') }
    })
    return { created: true, secret: generated?.secret }
  })
}

/** The default public client, with the configured scopes; a no-op when it exists (whatever its settings). */
export async function ensureDefaultClient (db: Db, config: { defaultClientId: string, scopes: string[] }, now: Date): Promise<boolean> {
  const { created } = await createClient(db, {
    clientId: config.defaultClientId,
    confidential: false,
    grants: ['password', 'refresh_token'],
    scopes: config.scopes,
    resources: []
  }, now, { actor: 'system' })
  return created
}

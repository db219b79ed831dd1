/**
 * Client authentication at /oauth/token and /oauth/revoke: one indexed read,
 * a SHA-256 and a constant-time comparison; never the argon2 queue. Every
 * failure (unknown, disabled, wrong or missing secret, a secret sent to a
 * public client) is the same 401 invalid_client, so the answer says nothing
 * about which clients exist beyond what RFC 6749 §5.2 requires; the reason
 * goes to the audit trail, the secret nowhere.
 * @module
 */
import { CompiledQuery } from 'kysely'
import type { Db, GrantType } from '../db/database.js'
import { namedStatement } from '../db/named-statements.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { OAuthError } from '../errors.js'
import { BASIC_CHALLENGE, type ClientCredentials } from './credentials.js'
import { digestMatches, secretDigest } from './secret.js'

export interface RegisteredClient {
  clientId: string
  confidential: boolean
  grants: GrantType[]
  scopes: string[]
  resources: string[]
}

export interface ClientAuthDeps {
  db: Db
  config: { defaultClientId: string }
}

export interface ClientAuthInput {
  credentials: ClientCredentials
  now: Date
  context: RequestContext
}

const NO_DIGEST = Buffer.alloc(32)

/**
 * The client's row as authentication needs it, in fixed text so nothing is
 * compiled per request, and named, so each connection parses and plans it
 * once (db/named-statements.ts; bench/lib/client-credentials.mjs measures the
 * same statement). Postgres judges the previous secret's grace against $2, the injected
 * clock, and answers booleans and digests only: no timestamp is parsed.
 */
export const CLIENT_READ_SQL = namedStatement('tessera_client_read', 'select confidential, grants, scopes, resources, secret_digest, ' +
  'case when previous_secret_expires_at > $2 then previous_secret_digest end as live_previous_digest, ' +
  'disabled_at is not null as disabled from clients where client_id = $1')

interface ClientRow {
  confidential: boolean
  grants: GrantType[]
  scopes: string[]
  resources: string[]
  secret_digest: Buffer | null
  /** The rotated-out secret while its grace lasts, else null. */
  live_previous_digest: Buffer | null
  disabled: boolean
}

function failureReason (row: ClientRow | undefined, credentials: ClientCredentials, secretOk: boolean): string | undefined {
  if (row === undefined) return 'unknown client'
  if (row.disabled) return 'client disabled'
  if (credentials.method === 'none') return row.confidential ? 'no client authentication' : undefined
  if (!row.confidential) return 'secret sent to a public client'
  return secretOk ? undefined : 'wrong secret'
}

export async function authenticateClient (deps: ClientAuthDeps, input: ClientAuthInput): Promise<RegisteredClient> {
  const { credentials } = input
  const clientId = credentials.clientId ?? deps.config.defaultClientId
  const { rows: [row] } = await deps.db.executeQuery<ClientRow>(CompiledQuery.raw(CLIENT_READ_SQL, [clientId, input.now]))
  let secretOk = false
  if (credentials.method !== 'none') {
    const presented = secretDigest(credentials.secret)
    const current = digestMatches(presented, row?.secret_digest ?? NO_DIGEST)
    const previous = digestMatches(presented, row?.live_previous_digest ?? NO_DIGEST)
    secretOk = (current || previous) && row?.secret_digest != null
  }
  const reason = failureReason(row, credentials, secretOk)
  if (row === undefined || reason !== undefined) throw await clientAuthenticationFailed(deps.db, { ...input, clientId, reason: reason ?? 'unknown client' })
  return { clientId, confidential: row.confidential, grants: row.grants, scopes: row.scopes, resources: row.resources }
}

/**
 * A failed client authentication, wherever it was judged (here, or inside
 * the refresh grant's SQL function): its audit row, and the one answer every
 * reason gets.
 */
export async function clientAuthenticationFailed (db: Db, failure: Pick<ClientAuthInput, 'credentials' | 'context'> & { clientId: string, reason: string }): Promise<OAuthError> {
  const { credentials, clientId, reason } = failure
  await recordAudit(db, {
    type: 'client.authentication_failed',
    actor: clientId,
    ...failure.context,
    detail: { client_id: clientId, reason, method: credentials.method }
  })
  return new OAuthError('invalid_client', 'client authentication failed', {
    detail: reason,
    ...(credentials.method === 'client_secret_basic' ? { challenge: BASIC_CHALLENGE } : {})
  })
}

/** RFC 6749 §5.2: a grant the client is not registered for. */
export function requireGrant (client: RegisteredClient, grant: GrantType): void {
  if (!client.grants.includes(grant)) throw unauthorizedClient(client.clientId, grant)
}

export function unauthorizedClient (clientId: string, grant: GrantType): OAuthError {
  return new OAuthError('unauthorized_client', `this client is not registered for grant_type=${grant}`, { detail: `${clientId} lacks ${grant}` })
}

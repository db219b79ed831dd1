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
import type { ClientsTable, Db, GrantType } from '../db/database.js'
import { namedStatement } from '../db/named-statements.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { OAuthError } from '../errors.js'
import { BASIC_CHALLENGE, type ClientCredentials } from './credentials.js'
import { digestMatches, looksLikeSecret, secretDigest } from './secret.js'
import type { ClientCache, ClientRecord } from './cache.js'

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
  /** An HTTP worker's rows in memory (clients/cache.ts); every read goes to the database without it. */
  clientCache?: ClientCache
}

export interface ClientAuthInput {
  credentials: ClientCredentials
  now: Date
  context: RequestContext
}

const NO_DIGEST = Buffer.alloc(32)
/** How an unknown client id that may be a secret is recorded: `#` is outside the client id pattern, so no client has it. */
const SECRET_SHAPED_ID = '#secret-shaped'

/**
 * The client's row as authentication needs it, in fixed text so nothing is
 * compiled per request, and named, so each connection parses and plans it
 * once (db/named-statements.ts; bench/lib/client-credentials.mjs measures the
 * same statement). The previous secret's end comes as epoch milliseconds, so
 * no timestamp is parsed, and is judged here against the injected clock:
 * a row kept in memory (clients/cache.ts) must be judged at each use.
 */
export const CLIENT_READ_SQL = namedStatement('tessera_client_read', 'select confidential, grants, scopes, resources, secret_digest, previous_secret_digest, ' +
  'extract(epoch from previous_secret_expires_at)::float8 * 1000 as previous_secret_expires_ms, ' +
  'disabled_at is not null as disabled from clients where client_id = $1')

type ClientRow = Pick<ClientsTable, 'confidential' | 'grants' | 'scopes' | 'resources' | 'secret_digest' | 'previous_secret_digest'> & {
  previous_secret_expires_ms: number | null
  disabled: boolean
}

async function readClient (db: Db, clientId: string): Promise<ClientRecord | undefined> {
  const { rows: [row] } = await db.executeQuery<ClientRow>(CompiledQuery.raw(CLIENT_READ_SQL, [clientId]))
  return row === undefined
    ? undefined
    : {
        confidential: row.confidential,
        grants: row.grants,
        scopes: row.scopes,
        resources: row.resources,
        secretDigest: row.secret_digest,
        previousSecretDigest: row.previous_secret_digest,
        previousSecretExpiresMs: row.previous_secret_expires_ms,
        disabled: row.disabled
      }
}

/** Whether the presented secret is the client's current one, or its previous one while the grace lasts. */
function secretMatches (record: ClientRecord | undefined, secret: string, now: Date): boolean {
  const presented = secretDigest(secret)
  const current = digestMatches(presented, record?.secretDigest ?? NO_DIGEST)
  const previousLive = record?.previousSecretExpiresMs != null && record.previousSecretExpiresMs > now.getTime()
  // Compared whether or not it is live, so the time taken says nothing of a rotation.
  const previous = digestMatches(presented, record?.previousSecretDigest ?? NO_DIGEST) && previousLive
  return (current || previous) && record?.secretDigest != null
}

function failureReason (row: ClientRecord | undefined, credentials: ClientCredentials, secretOk: boolean): string | undefined {
  if (row === undefined) return 'unknown client'
  if (row.disabled) return 'client disabled'
  if (credentials.method === 'none') return row.confidential ? 'no client authentication' : undefined
  if (!row.confidential) return 'secret sent to a public client'
  return secretOk ? undefined : 'wrong secret'
}

export async function authenticateClient (deps: ClientAuthDeps, input: ClientAuthInput): Promise<RegisteredClient> {
  const { credentials } = input
  const clientId = credentials.clientId ?? deps.config.defaultClientId
  const row = deps.clientCache === undefined
    ? await readClient(deps.db, clientId)
    : await deps.clientCache.read(clientId, async (id) => await readClient(deps.db, id))
  const secretOk = credentials.method !== 'none' && secretMatches(row, credentials.secret, input.now)
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
  // An unknown id shaped like a secret most likely is one, sent in the id's place: never written down.
  const recordedId = reason === 'unknown client' && looksLikeSecret(clientId) ? SECRET_SHAPED_ID : clientId
  await recordAudit(db, {
    type: 'client.authentication_failed',
    actor: recordedId,
    ...failure.context,
    detail: { client_id: recordedId, reason, method: credentials.method }
  })
  return new OAuthError('invalid_client', 'client authentication failed', {
    detail: reason,
    ...(credentials.method === 'client_secret_basic' || (credentials.method === 'none' && credentials.basic === true) ? { challenge: BASIC_CHALLENGE } : {})
  })
}

/** RFC 6749 §5.2: a grant the client is not registered for. */
export function requireGrant (client: RegisteredClient, grant: GrantType): void {
  if (!client.grants.includes(grant)) throw unauthorizedClient(client.clientId, grant)
}

export function unauthorizedClient (clientId: string, grant: GrantType): OAuthError {
  return new OAuthError('unauthorized_client', `this client is not registered for grant_type=${grant}`, { detail: `${clientId} lacks ${grant}` })
}

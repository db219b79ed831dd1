/**
 * Table types for Kysely, one interface per table of migrations/.
 * @module
 */
import type { ColumnType, Generated, Kysely, Selectable } from 'kysely'

type Timestamp = ColumnType<Date, Date | string, Date | string>
type DefaultedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>

export type SessionEndReason =
  'logout' | 'logout_all' | 'revoke' | 'reuse' | 'password_change' | 'user_disabled' | 'key_revoked' | 'session_deleted'
  | 'client_disabled' | 'client_deleted'

export type KeyState = 'next' | 'current' | 'previous' | 'retired' | 'revoked'

export interface UsersTable {
  id: Generated<string>
  username: string
  password_hash: string
  created_at: DefaultedTimestamp
  password_changed_at: DefaultedTimestamp
  disabled_at: Timestamp | null
  /** Set by `tessera users import` (migrations/0011); null for a user signed up or created in Tessera. */
  imported_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  /** The spelling the import read, when NFKC and lower-casing changed it (`Dave` for `dave`). */
  imported_as: ColumnType<string | null, string | null | undefined, string | null>
}

export interface SigningKeysTable {
  kid: string
  state: KeyState
  alg: Generated<'RS256'>
  bits: number
  public_jwk: ColumnType<PublicJwk, string, string>
  private_key_enc: Buffer | null
  created_at: DefaultedTimestamp
  published_at: DefaultedTimestamp
  promoted_at: Timestamp | null
  demoted_at: Timestamp | null
  unpublished_at: Timestamp | null
  private_erased_at: Timestamp | null
  revoked_at: Timestamp | null
  /** When the key schedule ended the sessions of this revoked key once more, after every instance had reloaded (keys/advance.ts). */
  sessions_swept_at: Generated<Date | null>
}

export interface PublicJwk {
  kty: 'RSA'
  n: string
  e: string
  kid: string
  alg: 'RS256'
  use: 'sig'
}

export interface SessionsTable {
  id: string
  user_id: string
  client_id: string
  scope: string
  created_at: Timestamp
  last_used_at: Timestamp
  expires_at: Timestamp
  absolute_expires_at: Timestamp
  revoked_at: Timestamp | null
  revoke_reason: SessionEndReason | null
  user_agent: string | null
  ip: string | null
  /** The resources (RFC 8707) its refresh tokens may ask access tokens for. */
  resources: ColumnType<string[], string[] | undefined, string[]>
}

export type GrantType = 'password' | 'refresh_token' | 'client_credentials'

export interface ClientsTable {
  client_id: string
  confidential: boolean
  grants: GrantType[]
  scopes: string[]
  resources: string[]
  /** SHA-256 of the secret; null for a public client. */
  secret_digest: Buffer | null
  /** The secret rotated out, still accepted until previous_secret_expires_at. */
  previous_secret_digest: Buffer | null
  previous_secret_expires_at: Timestamp | null
  created_at: DefaultedTimestamp
  secret_rotated_at: Timestamp | null
  disabled_at: Timestamp | null
}

export interface RefreshTokensTable {
  jti: string
  session_id: string
  parent_jti: string | null
  kid: string
  issued_at: Timestamp
  expires_at: Timestamp
  used_at: Timestamp | null
  successor_jti: string | null
}

export interface AuditEventsTable {
  id: Generated<string>
  occurred_at: DefaultedTimestamp
  type: string
  actor: string | null
  user_id: string | null
  username: string | null
  session_id: string | null
  kid: string | null
  ip: string | null
  user_agent: string | null
  request_id: string | null
  detail: ColumnType<Record<string, unknown>, string | undefined, string>
}

export interface LoginThrottleTable {
  username: string
  failures: number
  last_failed_at: Timestamp
  blocked_until: Timestamp | null
}

export interface Database {
  users: UsersTable
  signing_keys: SigningKeysTable
  sessions: SessionsTable
  refresh_tokens: RefreshTokensTable
  audit_events: AuditEventsTable
  login_throttle: LoginThrottleTable
  clients: ClientsTable
}

export type Db = Kysely<Database>
export type SigningKeyRow = Selectable<SigningKeysTable>

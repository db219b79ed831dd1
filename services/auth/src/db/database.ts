/**
 * Table types for Kysely, one interface per table of migrations/0001_initial.js.
 * @module
 */
import type { ColumnType, Generated, Insertable, Kysely, Selectable } from 'kysely'

type Timestamp = ColumnType<Date, Date | string, Date | string>
type DefaultedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>

export type SessionEndReason =
  'logout' | 'logout_all' | 'revoke' | 'reuse' | 'password_change' | 'user_disabled' | 'key_revoked' | 'session_deleted'

export type KeyState = 'next' | 'current' | 'previous' | 'retired' | 'revoked'

export interface UsersTable {
  id: Generated<string>
  username: string
  password_hash: string
  created_at: DefaultedTimestamp
  password_changed_at: DefaultedTimestamp
  disabled_at: Timestamp | null
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
}

export type Db = Kysely<Database>
export type User = Selectable<UsersTable>
export type SigningKeyRow = Selectable<SigningKeysTable>
export type Session = Selectable<SessionsTable>
export type RefreshTokenRow = Selectable<RefreshTokensTable>
export type NewAuditEvent = Insertable<AuditEventsTable>

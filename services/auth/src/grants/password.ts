/**
 * The password grant: authenticate the client (cheap, before any hashing),
 * verify the user's credentials through the bounded hashing queue, then
 * start a session and issue its first pair in one transaction.
 * Unknown users cost a dummy verify and disabled users a real one, and all
 * three failures throw the same invalid_grant. Before any hashing, a name in
 * back-off (passwords/login-throttle.ts) is refused with 429 temporarily_unavailable:
 * not invalid_grant, because even the right password is refused and a client
 * must wait rather than ask the user again.
 * @module
 */
import { CompiledQuery } from 'kysely'
import { invalidCredentials } from '../errors.js'
import { namedStatement } from '../db/named-statements.js'
import type { Db } from '../db/database.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { authenticateClient, clientAuthenticationFailed, requireGrant } from '../clients/authenticate.js'
import type { ClientCredentials } from '../clients/credentials.js'
import { audienceFor, requestedResource } from '../clients/resource.js'
import type { PasswordHashing } from '../passwords/hasher.js'
import { isDjangoHash } from '../passwords/django.js'
import { normalizePassword, normalizeUsername } from '../passwords/policy.js'
import { attemptOf, backedOff, COUNT_ATTEMPT_CALL, countAttemptParameters, evaluateCounted, type Attempt, type AttemptRow, type BackoffPolicy, type FailureRecord } from '../passwords/login-throttle.js'
import { grantedScope } from '../sessions/scope.js'
import { newSession, tokenPair, type Issuer, type NewSession, type TokenPair } from './issue.js'

export interface PasswordGrantInput {
  username: string
  password: string
  scope: string | undefined
  credentials: ClientCredentials
  resource: string | string[] | undefined
  now: Date
  context: RequestContext
  /**
   * A refresh token whatever the client's grants: SimpleJWT's login answers a
   * pair by definition. Otherwise a client not registered for the
   * refresh_token grant gets the access token alone (RFC 6749 §5.1: a
   * refresh token is optional), and a session that ends with it.
   */
  alwaysPair?: boolean
}

export interface LoginDeps extends Issuer {
  hasher: PasswordHashing
  backoff: BackoffPolicy
}

/**
 * The back-off key, also the audit row's username: the normalized name, or
 * `#invalid` for every text no user can have as a name. Such a text is
 * sometimes a password typed in the wrong field, and even a digest of it
 * could be reversed with a dictionary; a login with it can never succeed,
 * so one shared back-off costs no one a login.
 */
const INVALID_NAME_KEY = '#invalid'

function throttleKey (username: string | undefined): string {
  return username ?? INVALID_NAME_KEY
}

async function recordFailure (deps: LoginDeps, key: string, userId: string | undefined, reason: string, streak: FailureRecord, input: PasswordGrantInput): Promise<void> {
  await recordAudit(deps.db, {
    type: 'login.failed',
    // Whoever tried is not known to be the user: the row names the user it was about, the actor is anonymous.
    actor: 'anonymous',
    userId,
    username: key,
    ...input.context,
    detail: { reason, failures: streak.failures, blocked_until: streak.blockedUntil?.toISOString() ?? null }
  })
}

/**
 * Counts the attempt and reads the user in one statement: the throttle's
 * call (passwords/login-throttle.ts) joined with the user's row, which is
 * read even when the attempt is refused (cheaper than a second round trip).
 * Fixed text, sent by name.
 */
const LOGIN_ATTEMPT_SQL = namedStatement('tessera_login_attempt',
  `select a.*, u.id as user_id, u.username, u.password_hash, u.password_changed_at, u.disabled_at is not null as disabled from ${COUNT_ATTEMPT_CALL} a ` +
  'left join users u on u.username = $6')

interface LoginAttemptRow extends AttemptRow {
  user_id: string | null
  username: string | null
  password_hash: string | null
  password_changed_at: Date | null
  disabled: boolean | null
}

interface LoginUser {
  id: string
  username: string
  passwordHash: string
  /** When the password last changed (a rehash leaves it): how a login tells a new password from its own hash redone. */
  passwordChangedAt: Date | null
  disabled: boolean
}

async function countAttemptAndReadUser (deps: LoginDeps, key: string, username: string | undefined, now: Date): Promise<{ attempt: Attempt, user: LoginUser | undefined }> {
  // Checked again after the client's read: the queue may have filled meanwhile, and the attempt's write must not take the pool from refresh.
  if (deps.hasher.saturated) throw deps.hasher.overloaded()
  const { rows: [row] } = await deps.db.executeQuery<LoginAttemptRow>(CompiledQuery.raw(LOGIN_ATTEMPT_SQL,
    [...countAttemptParameters(key, now, deps.backoff), username ?? null]))
  const user = row?.user_id == null || row.username === null || row.password_hash === null
    ? undefined
    : { id: row.user_id, username: row.username, passwordHash: row.password_hash, passwordChangedAt: row.password_changed_at, disabled: row.disabled === true }
  return { attempt: attemptOf(row), user }
}

/**
 * After a verify that succeeded, one call (migrations/0008) that in one
 * transaction checks the user's password and state are still those verified
 * (a password change or a disable that committed since ended every session
 * it could see; this one must not start after it), stores the rehash if any,
 * clears the name's failures and inserts the session, its first refresh token
 * and the audit row; and (migrations/0013) that its client is still there
 * and enabled. Fixed text, sent by name.
 */
const START_LOGIN_SQL = namedStatement('tessera_start_login',
  'select tessera_start_login($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) as started')

interface StartLogin {
  user: LoginUser
  rehashed: string | undefined
  key: string
  session: NewSession
  clientId: string
  scope: string
  resources: string[]
  context: RequestContext
}

/** What the call answered: started, the user changed (false), or the client disabled or deleted (NULL, migrations/0013). */
type LoginStart = 'started' | 'user changed' | 'client gone'

async function startLogin (db: Db, login: StartLogin): Promise<LoginStart> {
  const { user, session, context } = login
  const { rows: [row] } = await db.executeQuery<{ started: boolean | null }>(CompiledQuery.raw(START_LOGIN_SQL, [
    user.id, user.passwordHash, login.rehashed ?? null, login.key,
    session.sessionId, login.clientId, login.scope, login.resources, session.issuedAt, session.expiresAt, session.absoluteExpiresAt,
    session.jti, session.kid, context.ip ?? null, context.userAgent?.slice(0, 512) ?? null, context.requestId ?? null, user.username
  ]))
  return row?.started === true ? 'started' : row?.started === null ? 'client gone' : 'user changed'
}

/**
 * The user's hash now, when a concurrent login of the same user has rehashed
 * the password this login verified (a Django hash, or older argon2
 * parameters): the hash changed, the password did not, since a rehash leaves
 * password_changed_at as it was. Undefined when the password changed or the
 * user was disabled: then the login is refused as the call answered.
 */
async function rehashedMeanwhile (db: Db, user: LoginUser): Promise<string | undefined> {
  const row = await db.selectFrom('users').select(['password_hash', 'password_changed_at', 'disabled_at']).where('id', '=', user.id).executeTakeFirst()
  if (row === undefined || row.disabled_at !== null || row.password_hash === user.passwordHash) return undefined
  return row.password_changed_at?.getTime() === user.passwordChangedAt?.getTime() ? row.password_hash : undefined
}

export async function passwordGrant (deps: LoginDeps, input: PasswordGrantInput): Promise<TokenPair> {
  const resource = requestedResource(input.resource, deps.config.issuer)
  const password = normalizePassword(input.password)
  const username = normalizeUsername(input.username)
  // Shed before touching the database: a flood must not take the pool from refresh.
  if (deps.hasher.saturated) throw deps.hasher.overloaded()
  const client = await authenticateClient(deps, input)
  requireGrant(client, 'password')
  const audience = audienceFor(resource, client.resources)
  const scope = grantedScope(input.scope, client.scopes)
  const key = throttleKey(username)
  const { attempt, user } = await countAttemptAndReadUser(deps, key, username, input.now)
  if (attempt.refused) {
    await recordAudit(deps.db, { type: 'login.backed_off', actor: 'anonymous', userId: user?.id, username: key, ...input.context, detail: { retry_after: attempt.retryAfter } })
    throw backedOff('too many failed logins for this username, or too many at once', attempt.retryAfter)
  }

  // Django hashed the password as typed; Tessera hashes its NFKC form.
  const valid = await evaluateCounted(deps.db, key, deps.backoff, async () => user === undefined
    ? await deps.hasher.dummyVerify(password)
    : await deps.hasher.verify(user.passwordHash, isDjangoHash(user.passwordHash) ? input.password : password))
  if (user === undefined) {
    await recordFailure(deps, key, undefined, 'unknown_user', attempt, input)
    throw invalidCredentials('unknown_user')
  }
  if (!valid || user.disabled) {
    const reason = valid ? 'user_disabled' : 'wrong_password'
    await recordFailure(deps, key, user.id, reason, attempt, input)
    throw invalidCredentials(reason)
  }
  const rehashed = deps.hasher.needsRehash(user.passwordHash) ? await deps.hasher.hash(password) : undefined

  const refreshable = input.alwaysPair === true || client.grants.includes('refresh_token')
  const session = newSession(deps, user.id, input.now, refreshable)
  const login = { key, session, clientId: client.clientId, scope, resources: client.resources, context: input.context }
  let started = await startLogin(deps.db, { ...login, user, rehashed })
  if (started === 'user changed') {
    // Once, against the rehash a concurrent login stored: the same password, so no rehash of its own.
    const current = await rehashedMeanwhile(deps.db, user)
    if (current !== undefined) started = await startLogin(deps.db, { ...login, user: { ...user, passwordHash: current }, rehashed: undefined })
  }
  if (started === 'user changed') {
    await recordFailure(deps, key, user.id, 'user_changed_during_login', attempt, input)
    throw invalidCredentials('password changed or user disabled during login')
  }
  if (started === 'client gone') {
    throw await clientAuthenticationFailed(deps.db, { credentials: input.credentials, context: input.context, clientId: client.clientId, reason: 'client disabled or deleted during login' })
  }
  return tokenPair(deps, session, { clientId: client.clientId, scope, audience, now: input.now, username: user.username, refreshable })
}

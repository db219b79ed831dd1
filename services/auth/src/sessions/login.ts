/**
 * The password grant: authenticate the client (cheap, before any hashing),
 * verify the user's credentials through the bounded hashing queue, then
 * start a session and issue its first pair in one transaction.
 * Unknown users cost a dummy verify and disabled users a real one, and all
 * three failures throw the same invalid_grant. Before any hashing, a name in
 * back-off (login-throttle.ts) is refused with 429 temporarily_unavailable:
 * not invalid_grant, because even the right password is refused and a client
 * must wait rather than ask the user again.
 * @module
 */
import { OAuthError, invalidCredentials } from '../errors.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import { authenticateClient, requireGrant } from '../clients/authenticate.js'
import type { ClientCredentials } from '../clients/credentials.js'
import { audienceFor, requestedResource } from '../clients/resource.js'
import type { PasswordHashing } from '../passwords/hasher.js'
import { isDjangoHash } from '../passwords/django.js'
import { normalizePassword, normalizeUsername } from '../passwords/policy.js'
import { backoffRemaining, clearLoginFailures, recordLoginFailure, type BackoffPolicy } from './login-throttle.js'
import { grantedScope } from './scope.js'
import { startSession, tokenPair, type Issuer, type TokenPair } from './issue.js'

export interface PasswordGrantInput {
  username: string
  password: string
  scope: string | undefined
  credentials: ClientCredentials
  resource: string | string[] | undefined
  now: Date
  context: RequestContext
}

export interface LoginDeps extends Issuer {
  hasher: PasswordHashing
  backoff: BackoffPolicy
}

/** The back-off key: the normalized name, or for a name no user can have, its folded text (bounded). */
function throttleKey (username: string | undefined, raw: string): string {
  return username ?? raw.normalize('NFKC').toLowerCase().slice(0, 64)
}

async function recordFailure (deps: LoginDeps, key: string, userId: string | undefined, reason: string, input: PasswordGrantInput): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    const streak = await recordLoginFailure(trx, key, input.now, deps.backoff)
    await recordAudit(trx, {
      type: 'login.failed',
      actor: userId ?? 'anonymous',
      userId,
      username: key,
      ...input.context,
      detail: { reason, failures: streak.failures, blocked_until: streak.blockedUntil?.toISOString() ?? null }
    })
  })
}

export async function passwordGrant (deps: LoginDeps, input: PasswordGrantInput): Promise<TokenPair> {
  const resource = requestedResource(input.resource)
  const password = normalizePassword(input.password)
  const username = normalizeUsername(input.username)
  // Shed before touching the database: a flood must not take the pool from refresh.
  if (deps.hasher.saturated) throw deps.hasher.overloaded()
  const client = await authenticateClient(deps, input)
  requireGrant(client, 'password')
  const audience = audienceFor(resource, client.resources)
  const scope = grantedScope(input.scope, client.scopes)
  const key = throttleKey(username, input.username)
  const wait = await backoffRemaining(deps.db, key, input.now)
  if (wait !== undefined) {
    await recordAudit(deps.db, { type: 'login.backed_off', actor: 'anonymous', username: key, ...input.context, detail: { retry_after: wait } })
    throw new OAuthError('temporarily_unavailable', `too many failed logins for this username; retry in ${wait} s`, { status: 429, retryAfter: wait, detail: 'username backed off' })
  }
  const user = username === undefined
    ? undefined
    : await deps.db.selectFrom('users').select(['id', 'username', 'password_hash', 'disabled_at']).where('username', '=', username).executeTakeFirst()

  if (user === undefined) {
    await deps.hasher.dummyVerify(password)
    await recordFailure(deps, key, undefined, 'unknown_user', input)
    throw invalidCredentials('unknown user')
  }
  // Django hashed the password as typed; Tessera hashes its NFKC form.
  const valid = await deps.hasher.verify(user.password_hash, isDjangoHash(user.password_hash) ? input.password : password)
  if (!valid || user.disabled_at !== null) {
    const reason = valid ? 'user_disabled' : 'wrong_password'
    await recordFailure(deps, key, user.id, reason, input)
    throw invalidCredentials(reason)
  }
  if (deps.hasher.needsRehash(user.password_hash)) {
    const rehashed = await deps.hasher.hash(password)
    await deps.db.updateTable('users').set({ password_hash: rehashed })
      .where('id', '=', user.id).where('password_hash', '=', user.password_hash).execute()
  }

  const record = await deps.db.transaction().execute(async (trx) => {
    await clearLoginFailures(trx, key)
    const started = await startSession(trx, deps, { userId: user.id, clientId: client.clientId, scope, resources: client.resources, now: input.now, context: input.context })
    await recordAudit(trx, { type: 'login.succeeded', actor: user.id, userId: user.id, username, sessionId: started.sessionId, ...input.context })
    return started
  })
  return tokenPair(deps, record, { clientId: record.clientId, scope: record.scope, audience, now: input.now, username: user.username })
}

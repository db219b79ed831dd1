/**
 * The password grant: verify the credentials through the bounded hashing
 * queue, then start a session and issue its first pair in one transaction.
 * Unknown users cost a dummy verify and disabled users a real one, and all
 * three failures throw the same invalid_grant.
 * @module
 */
import type { Db } from '../db/database.js'
import { invalidCredentials } from '../errors.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import type { PasswordHasher } from '../passwords/hasher.js'
import { normalizePassword, normalizeUsername } from '../passwords/policy.js'
import { grantedScope } from './scope.js'
import { startSession, tokenPair, type Issuer, type TokenPair } from './issue.js'

export interface PasswordGrantInput {
  username: string
  password: string
  scope: string | undefined
  clientId: string
  now: Date
  context: RequestContext
}

export interface LoginDeps extends Issuer {
  hasher: PasswordHasher
  allowedScopes: readonly string[]
}

async function auditFailure (db: Db, username: string, userId: string | undefined, reason: string, context: RequestContext): Promise<void> {
  await recordAudit(db, { type: 'login.failed', actor: userId ?? 'anonymous', userId, username: username.slice(0, 64), ...context, detail: { reason } })
}

export async function passwordGrant (deps: LoginDeps, input: PasswordGrantInput): Promise<TokenPair> {
  const scope = grantedScope(input.scope, deps.allowedScopes)
  const password = normalizePassword(input.password)
  const username = normalizeUsername(input.username)
  const user = username === undefined
    ? undefined
    : await deps.db.selectFrom('users').select(['id', 'password_hash', 'disabled_at']).where('username', '=', username).executeTakeFirst()

  if (user === undefined) {
    await deps.hasher.dummyVerify(password)
    await auditFailure(deps.db, username ?? input.username, undefined, 'unknown_user', input.context)
    throw invalidCredentials('unknown user')
  }
  const valid = await deps.hasher.verify(user.password_hash, password)
  if (!valid || user.disabled_at !== null) {
    const reason = valid ? 'user_disabled' : 'wrong_password'
    await auditFailure(deps.db, username ?? input.username, user.id, reason, input.context)
    throw invalidCredentials(reason)
  }
  if (deps.hasher.needsRehash(user.password_hash)) {
    const rehashed = await deps.hasher.hash(password)
    await deps.db.updateTable('users').set({ password_hash: rehashed })
      .where('id', '=', user.id).where('password_hash', '=', user.password_hash).execute()
  }

  const record = await deps.db.transaction().execute(async (trx) => {
    const started = await startSession(trx, deps, { userId: user.id, clientId: input.clientId, scope, now: input.now, context: input.context })
    await recordAudit(trx, { type: 'login.succeeded', actor: user.id, userId: user.id, username, sessionId: started.sessionId, ...input.context })
    return started
  })
  return tokenPair(deps, record, { clientId: record.clientId, scope: record.scope, now: input.now })
}

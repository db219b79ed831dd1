/**
 * Sign-up (`signUp`, POST /v1/users) and `tessera users create` (`createUser`,
 * which an operator may run whatever TESSERA_SIGNUP says).
 * @module
 */
import type { Db } from '../db/database.js'
import { ProblemError } from '../errors.js'
import { recordAudit, type RequestContext } from '../audit/record.js'
import type { PasswordHashing } from '../passwords/hasher.js'
import { acceptablePassword, acceptableUsername } from '../passwords/policy.js'

export interface CreatedUser {
  id: string
  username: string
  createdAt: Date
}

const UNIQUE_VIOLATION = '23505'

export async function createUser (db: Db, hasher: PasswordHashing, input: { username: string, password: string }, context: RequestContext & { actor?: string } = {}): Promise<CreatedUser> {
  const username = acceptableUsername(input.username)
  const passwordHash = await hasher.hash(acceptablePassword(input.password))
  try {
    return await db.transaction().execute(async (trx) => {
      const row = await trx.insertInto('users').values({ username, password_hash: passwordHash })
        .returning(['id', 'username', 'created_at']).executeTakeFirstOrThrow()
      await recordAudit(trx, { type: 'user.created', actor: context.actor ?? row.id, userId: row.id, username, ...context })
      return { id: row.id, username: row.username, createdAt: row.created_at }
    })
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION) {
      throw new ProblemError(409, 'Conflict', { publicDetail: 'username: is already taken' })
    }
    throw err
  }
}

/** A user creating their own account: only while TESSERA_SIGNUP is open. */
export async function signUp (db: Db, hasher: PasswordHashing, signup: 'open' | 'closed', input: { username: string, password: string }, context: RequestContext = {}): Promise<CreatedUser> {
  if (signup === 'closed') throw new ProblemError(403, 'Forbidden', { publicDetail: 'sign-up is closed; ask an operator for an account' })
  return await createUser(db, hasher, input, context)
}

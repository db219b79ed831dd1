/**
 * A session of the default client with one unused refresh token, written
 * straight to the tables (no keyring, no signing), for tests of the refresh
 * grant's database call.
 */
import { randomUUID } from 'node:crypto'
import type { Db } from '../../src/db/database.js'

const DAY = 86_400_000

export interface SessionFixture { userId: string, sessionId: string, jti: string, kid: string, createdAt: Date }

/** Created at `createdAt`, its token and the session expiring a day later, the session's absolute limit 90 days later. */
export async function sessionWithToken (db: Db, createdAt: Date): Promise<SessionFixture> {
  const kid = `k-${randomUUID()}`
  await db.insertInto('signing_keys').values({ kid, state: 'previous', bits: 2048, public_jwk: JSON.stringify({ kty: 'RSA' }), private_key_enc: Buffer.from('x') }).execute()
  const user = await db.insertInto('users').values({ username: `u-${randomUUID().slice(0, 8)}`, password_hash: 'x' }).returning('id').executeTakeFirstOrThrow()
  const sessionId = randomUUID()
  await db.insertInto('sessions').values({
    id: sessionId,
    user_id: user.id,
    client_id: 'tessera',
    scope: 'read',
    created_at: createdAt,
    last_used_at: createdAt,
    expires_at: new Date(createdAt.getTime() + DAY),
    absolute_expires_at: new Date(createdAt.getTime() + 90 * DAY)
  }).execute()
  const jti = randomUUID()
  await db.insertInto('refresh_tokens').values({ jti, session_id: sessionId, kid, issued_at: createdAt, expires_at: new Date(createdAt.getTime() + DAY) }).execute()
  return { userId: user.id, sessionId, jti, kid, createdAt }
}

/**
 * The refresh grant's database call against a real Postgres: a fixture (a
 * session with one unused token, its own user and key), the decision's input
 * for it, and a snapshot of everything a decision may write for it.
 */
import { randomUUID } from 'node:crypto'
import type { Db } from '../../src/db/database.js'
import type { RefreshDecisionInput } from '../../src/grants/refresh-decisions.js'

export const DAY = 86_400_000
/** A whole second plus 200 ms, so flooring to the second is visible. */
export const NOW = new Date(Math.floor(Date.now() / 1000) * 1000 + 200)
export const TTL = 3600
export const GRACE = 10

export interface Fixture { db: Db, userId: string, sessionId: string, jti: string, kid: string }

export async function fixture (db: Db, session: { expiresAt?: Date, absoluteExpiresAt?: Date, scope?: string } = {}): Promise<Fixture> {
  const kid = `k-${randomUUID()}`
  await db.insertInto('signing_keys').values({ kid, state: 'previous', bits: 2048, public_jwk: JSON.stringify({ kty: 'RSA' }), private_key_enc: Buffer.from('x') }).execute()
  const user = await db.insertInto('users').values({ username: `u-${randomUUID().slice(0, 8)}`, password_hash: 'x' }).returning('id').executeTakeFirstOrThrow()
  const sessionId = randomUUID()
  const absolute = session.absoluteExpiresAt ?? new Date(NOW.getTime() + 90 * DAY)
  await db.insertInto('sessions').values({
    id: sessionId,
    user_id: user.id,
    client_id: 'tessera',
    scope: session.scope ?? 'read write',
    created_at: new Date(NOW.getTime() - DAY),
    last_used_at: new Date(NOW.getTime() - DAY),
    expires_at: session.expiresAt ?? new Date(Math.min(NOW.getTime() + DAY, absolute.getTime())),
    absolute_expires_at: absolute,
    ip: '10.0.0.1',
    user_agent: 'old agent'
  }).execute()
  const jti = randomUUID()
  await db.insertInto('refresh_tokens').values({ jti, session_id: sessionId, kid, issued_at: new Date(NOW.getTime() - DAY), expires_at: new Date(NOW.getTime() + DAY) }).execute()
  return { db, userId: user.id, sessionId, jti, kid }
}

export function input (f: Fixture, overrides: Partial<RefreshDecisionInput> = {}): RefreshDecisionInput {
  return {
    claims: { jti: f.jti, sid: f.sessionId, sub: f.userId },
    wantedScope: undefined,
    now: NOW,
    graceSeconds: GRACE,
    ttlSeconds: TTL,
    successorJti: randomUUID(),
    successorKid: f.kid,
    context: { ip: '192.0.2.7', userAgent: 'new agent' },
    ...overrides
  }
}

/** Everything the function may write for a fixture, to prove a refusal wrote nothing. */
export async function snapshot (f: Fixture): Promise<unknown> {
  return {
    session: await f.db.selectFrom('sessions').selectAll().where('id', '=', f.sessionId).executeTakeFirst(),
    tokens: await f.db.selectFrom('refresh_tokens').selectAll().where('session_id', '=', f.sessionId).orderBy('issued_at').orderBy('jti').execute()
  }
}

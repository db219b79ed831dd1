/**
 * `tessera clients rotate-secret ID [--grace D]`: a new secret, while the
 * one it replaces keeps working for the grace period, so each instance of a
 * service can switch at its own pace. Rotating again inside a grace period
 * drops the oldest secret at once: at most two secrets work at any time.
 * @module
 */
import { sql } from 'kysely'
import { recordAudit, type RequestContext } from '../audit/record.js'
import type { Db } from '../db/database.js'
import { generateSecret } from './secret.js'

export type RotateSecretResult =
  | { kind: 'rotated', secret: string, previousExpiresAt: Date | null }
  | { kind: 'unknown' }
  | { kind: 'public' }

/** `clock` is read once the client's row is locked: a rotation that waited for another is dated after it, and its grace runs from when it took effect. */
export async function rotateClientSecret (db: Db, input: { clientId: string, graceSeconds: number, clock: () => Date }, context: RequestContext & { actor: string }): Promise<RotateSecretResult> {
  const { secret, digest } = generateSecret()
  return await db.transaction().execute(async (trx) => {
    const client = await trx.selectFrom('clients').select(['confidential']).where('client_id', '=', input.clientId).forUpdate().executeTakeFirst()
    if (client === undefined) return { kind: 'unknown' }
    if (!client.confidential) return { kind: 'public' }
    const now = input.clock()
    const previousExpiresAt = input.graceSeconds > 0 ? new Date(now.getTime() + input.graceSeconds * 1000) : null
    await trx.updateTable('clients').set({
      previous_secret_digest: previousExpiresAt === null ? null : sql<Buffer>`secret_digest`,
      previous_secret_expires_at: previousExpiresAt,
      secret_digest: digest,
      secret_rotated_at: now
    }).where('client_id', '=', input.clientId).execute()
    await recordAudit(trx, {
      type: 'client.secret_rotated',
      ...context,
      detail: { client_id: input.clientId, previous_secret_expires_at: previousExpiresAt?.toISOString() ?? null }
    })
    return { kind: 'rotated', secret, previousExpiresAt }
  })
}

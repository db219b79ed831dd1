/**
 * `tessera clients rotate-secret ID [--grace D]`: a new secret, while the
 * one it replaces keeps working for the grace period, so each instance of a
 * service can switch at its own pace. Rotating again inside a grace period
 * drops the oldest secret at once: at most two secrets work at any time.
 *
 * `--keep-old` is the way out when a rotation's output was lost: the new
 * secret replaces the current one (which no one holds) and the old secret,
 * the one the services still hold, keeps working.
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

/** One audit row per rotation, plain or --keep-old, in one shape: the old secret's deadline (null: it stopped at once) and whether it was kept. */
async function auditRotation (trx: Db, context: RequestContext & { actor: string }, rotation: { clientId: string, previousExpiresAt: Date | null, keptOld: boolean }): Promise<void> {
  await recordAudit(trx, {
    type: 'client.secret_rotated',
    ...context,
    detail: { client_id: rotation.clientId, previous_secret_expires_at: rotation.previousExpiresAt?.toISOString() ?? null, kept_old: rotation.keptOld }
  })
}

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
    await auditRotation(trx, context, { clientId: input.clientId, previousExpiresAt, keptOld: false })
    return { kind: 'rotated', secret, previousExpiresAt }
  })
}

export type ReplaceCurrentSecretResult =
  | { kind: 'rotated', secret: string, previousExpiresAt: Date }
  | { kind: 'unknown' }
  | { kind: 'public' }
  /** No old secret works now (none, or its grace is over): there is nothing to keep, and nothing was changed. */
  | { kind: 'no_old_secret' }

/**
 * `rotate-secret ID --keep-old [--grace D]`: a new secret replaces the
 * current one, which stops working at once, and the old secret in its grace
 * period keeps working, until its deadline (`graceSeconds` undefined) or
 * `graceSeconds` from now (more than 0: 0 would drop the secret this keeps).
 * Whether an old secret works is judged by the clock read under the row's
 * lock, as authentication judges it (clients/authenticate.ts).
 */
export async function replaceCurrentSecret (db: Db, input: { clientId: string, graceSeconds: number | undefined, clock: () => Date }, context: RequestContext & { actor: string }): Promise<ReplaceCurrentSecretResult> {
  if (input.graceSeconds !== undefined && !(input.graceSeconds > 0)) throw new RangeError('replaceCurrentSecret: graceSeconds must be more than 0; a grace of 0 drops the old secret')
  const { secret, digest } = generateSecret()
  return await db.transaction().execute(async (trx) => {
    const client = await trx.selectFrom('clients').select(['confidential', 'previous_secret_expires_at']).where('client_id', '=', input.clientId).forUpdate().executeTakeFirst()
    if (client === undefined) return { kind: 'unknown' }
    if (!client.confidential) return { kind: 'public' }
    const now = input.clock()
    const deadline = client.previous_secret_expires_at
    if (deadline === null || deadline.getTime() <= now.getTime()) return { kind: 'no_old_secret' }
    const previousExpiresAt = input.graceSeconds === undefined ? deadline : new Date(now.getTime() + input.graceSeconds * 1000)
    await trx.updateTable('clients').set({
      // Unchanged, the deadline is not written back: a Date would round off the column's microseconds.
      ...(input.graceSeconds === undefined ? {} : { previous_secret_expires_at: previousExpiresAt }),
      secret_digest: digest,
      secret_rotated_at: now
    }).where('client_id', '=', input.clientId).execute()
    await auditRotation(trx, context, { clientId: input.clientId, previousExpiresAt, keptOld: true })
    return { kind: 'rotated', secret, previousExpiresAt }
  })
}

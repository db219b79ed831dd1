/**
 * Disabling and deleting a client: both end its sessions at once, in the
 * same transaction, so no refresh token of it works a moment longer. Its
 * access tokens live out their few minutes, as for any ended session. The
 * clock is read once the client's row is locked (or deleted): a login that
 * committed while the change waited is ended at a time after it began.
 * @module
 */
import { recordAudit, type RequestContext } from '../audit/record.js'
import type { Db } from '../db/database.js'
import { endSessions } from '../sessions/end.js'

export interface EndedClient {
  /** False when it was already disabled (disable is idempotent). */
  changed: boolean
  sessionsEnded: number
}

export async function disableClient (db: Db, clientId: string, clock: () => Date, context: RequestContext & { actor: string }): Promise<EndedClient | undefined> {
  return await db.transaction().execute(async (trx) => {
    const client = await trx.selectFrom('clients').select('disabled_at').where('client_id', '=', clientId).forUpdate().executeTakeFirst()
    if (client === undefined) return undefined
    const now = clock()
    if (client.disabled_at === null) await trx.updateTable('clients').set({ disabled_at: now }).where('client_id', '=', clientId).execute()
    const sessionsEnded = await endSessions(trx, { clientId }, 'client_disabled', now, context)
    if (client.disabled_at === null) await recordAudit(trx, { type: 'client.disabled', ...context, detail: { client_id: clientId, sessions_ended: sessionsEnded } })
    return { changed: client.disabled_at === null, sessionsEnded }
  })
}

export async function deleteClient (db: Db, clientId: string, clock: () => Date, context: RequestContext & { actor: string }): Promise<EndedClient | undefined> {
  return await db.transaction().execute(async (trx) => {
    const deleted = await trx.deleteFrom('clients').where('client_id', '=', clientId).returning('client_id').executeTakeFirst()
    if (deleted === undefined) return undefined
    const sessionsEnded = await endSessions(trx, { clientId }, 'client_deleted', clock(), context)
    await recordAudit(trx, { type: 'client.deleted', ...context, detail: { client_id: clientId, sessions_ended: sessionsEnded } })
    return { changed: true, sessionsEnded }
  })
}

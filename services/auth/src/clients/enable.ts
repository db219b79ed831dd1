/**
 * `tessera clients enable ID`: the way back from `clients disable`. It
 * clears `disabled_at` and nothing else: the sessions the disable ended
 * stay ended (their users log in again), and a confidential client keeps
 * the secrets it had, since an operator who disabled it because a secret
 * leaked rotates that secret, and only they know why it was disabled
 * (docs/decisions.md, "clients enable"). The `clients` trigger tells every
 * worker's cache of the change, as it does a disable's.
 * @module
 */
import { recordAudit, type RequestContext } from '../audit/record.js'
import type { Db } from '../db/database.js'

export interface EnabledClient {
  /** False when it was not disabled: nothing was written, as for a `users enable` that changes nothing. */
  changed: boolean
  confidential: boolean
}

export async function enableClient (db: Db, clientId: string, context: RequestContext & { actor: string }): Promise<EnabledClient | undefined> {
  return await db.transaction().execute(async (trx) => {
    const client = await trx.selectFrom('clients').select(['confidential', 'disabled_at']).where('client_id', '=', clientId).forUpdate().executeTakeFirst()
    if (client === undefined) return undefined
    if (client.disabled_at !== null) {
      await trx.updateTable('clients').set({ disabled_at: null }).where('client_id', '=', clientId).execute()
      await recordAudit(trx, { type: 'client.enabled', ...context, detail: { client_id: clientId, disabled_at: client.disabled_at.toISOString() } })
    }
    return { changed: client.disabled_at !== null, confidential: client.confidential }
  })
}

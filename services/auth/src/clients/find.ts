/**
 * Reading registered clients, for operators: never a secret or its digest.
 * @module
 */
import type { Db, GrantType } from '../db/database.js'

export interface ClientView {
  clientId: string
  confidential: boolean
  grants: GrantType[]
  scopes: string[]
  resources: string[]
  createdAt: Date
  secretRotatedAt: Date | null
  previousSecretExpiresAt: Date | null
  disabledAt: Date | null
}

function query (db: Db) {
  return db.selectFrom('clients').select([
    'client_id as clientId', 'confidential', 'grants', 'scopes', 'resources', 'created_at as createdAt',
    'secret_rotated_at as secretRotatedAt', 'previous_secret_expires_at as previousSecretExpiresAt', 'disabled_at as disabledAt'
  ])
}

export async function listClients (db: Db): Promise<ClientView[]> {
  return await query(db).orderBy('client_id').execute()
}

export async function findClient (db: Db, clientId: string): Promise<ClientView | undefined> {
  return await query(db).where('client_id', '=', clientId).executeTakeFirst()
}

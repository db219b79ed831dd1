/**
 * `tessera migrate up|down|status`.
 * @module
 */
import { migrateDown, migrateUp, migrationStatus } from '../db/migrate.js'
import type { CommandContext } from './main.js'
import { CliError, table } from './output.js'

export async function migrateCommand (ctx: CommandContext): Promise<void> {
  const [action] = ctx.args
  const { db } = await ctx.connection()
  if (action === 'up') {
    const applied = await migrateUp(db)
    ctx.out.result(applied.length === 0 ? 'already up to date' : `applied ${applied.join(', ')}`, { applied })
  } else if (action === 'down') {
    const reverted = await migrateDown(db)
    ctx.out.result(reverted.length === 0 ? 'nothing to revert' : `reverted ${reverted.join(', ')}`, { reverted })
  } else if (action === 'status') {
    const status = await migrationStatus(db)
    ctx.out.result(table(status.map((m) => ({ migration: m.name, applied: m.appliedAt?.toISOString() ?? 'pending' }))),
      status.map((m) => ({ name: m.name, applied_at: m.appliedAt?.toISOString() ?? null })))
  } else {
    throw new CliError('usage: tessera migrate up|down|status', 2)
  }
}

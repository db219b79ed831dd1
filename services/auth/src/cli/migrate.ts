/**
 * `tessera migrate up|down --yes|status`. Needs only the database: no KEK, so
 * a migration one-shot never holds the key that unseals the signing keys.
 * @module
 */
import { migrateDown, migrateUp, migrationStatus, schemaStanding, tablesOutsideOwner } from '../db/migrate.js'
import type { CommandContext } from './context.js'
import { CliError, commandFlags, formatTable, refuseForeignFlags, type CommandSyntax } from './output.js'

const USAGE = 'usage: tessera migrate up | status | down --yes'
const SYNTAX: CommandSyntax = { command: 'migrate', actions: ['up', 'status', 'down'], usage: USAGE }

export async function migrateCommand (ctx: CommandContext): Promise<void> {
  const flags = commandFlags(ctx.argv, SYNTAX, { yes: { type: 'boolean' } })
  const [action] = ctx.args
  if ((action !== 'up' && action !== 'down' && action !== 'status') || ctx.args.length > 1) throw new CliError(USAGE, 2)
  refuseForeignFlags(SYNTAX, action, flags, action === 'down' ? ['yes'] : [])
  if (action === 'down' && flags.yes !== true) {
    throw new CliError('migrate down drops the newest migration\'s tables and their data: run `tessera migrate down --yes` to go ahead', 2)
  }
  const { db } = await ctx.connection()
  if (action === 'up') {
    const applied = await migrateUp(db)
    const newer = applied.length === 0 ? (await schemaStanding(db)).unknownHere : []
    const said = applied.length > 0
      ? `applied ${applied.join(', ')}`
      : newer.length > 0 ? `nothing to apply: the schema is ahead of this build (${newer.join(', ')} applied by a newer one)` : 'already up to date'
    ctx.out.result(said, { applied, newer })
    // Applied as a superuser on a database db roles set up: the runtime role is refused the new tables until they change hands.
    const stray = applied.length > 0 ? await tablesOutsideOwner(db) : undefined
    if (stray !== undefined) {
      process.stderr.write(`tessera: migrations applied as ${stray.role}, not as ${stray.owner}, the owner of schema public: the tables they made (${stray.tables.join(', ')}) are ${stray.role}'s, and the runtime role may not use them until \`tessera db roles\` gives them to ${stray.owner}: run it now, as a superuser with the three roles' passwords, and \`migrate up\` as the owner role from now on (docs/operators.md, "Database roles")\n`)
    }
  } else if (action === 'down') {
    const reverted = await migrateDown(db)
    ctx.out.result(reverted.length === 0 ? 'nothing to revert' : `reverted ${reverted.join(', ')}`, { reverted })
  } else {
    const status = await migrationStatus(db)
    ctx.out.result(formatTable(status.map((m) => ({ migration: m.inThisBuild ? m.name : `${m.name} (not in this build)`, applied: m.appliedAt?.toISOString() ?? (m.inThisBuild ? 'pending' : 'applied') }))),
      status.map((m) => ({ name: m.name, applied_at: m.appliedAt?.toISOString() ?? null, in_this_build: m.inThisBuild })))
  }
}

/**
 * `tessera cleanup`: the periodic cleanup, run now, until nothing due is left.
 * @module
 */
import { cleanupExpired } from '../sessions/cleanup.js'
import type { CommandContext } from './context.js'
import { CliError, commandFlags } from './output.js'

const USAGE = 'usage: tessera cleanup'

export async function cleanupCommand (ctx: CommandContext): Promise<void> {
  commandFlags(ctx.argv, { command: 'cleanup', usage: USAGE })
  if (ctx.args.length > 0) throw new CliError(USAGE, 2)
  const { db } = await ctx.connection()
  // One cut-off for every round: what becomes due while it runs is the job's,
  // so the command ends however fast rows are written.
  const options = { now: (await ctx.clock())(), revokedRetention: ctx.config.revokedRetention, auditRetention: ctx.config.auditRetention, by: { actor: 'operator', userAgent: 'tessera-cli' } }
  const total = { ran: false, sessions: 0, refreshTokens: 0, auditEvents: 0 }
  for (;;) {
    // Each round takes and lets go of the lock, as the job's do. A later
    // round that finds it taken stops here: whoever holds it, an instance's
    // job or another `tessera cleanup`, carries on.
    const round = await cleanupExpired(db, options)
    if (!round.ran) break
    total.ran = true
    total.sessions += round.sessions
    total.refreshTokens += round.refreshTokens
    total.auditEvents += round.auditEvents
    if (!round.behind) break
  }
  // The lock tells only that it is held, not by whom: the message names both holders it may be.
  ctx.out.result(total.ran
    ? `deleted ${total.sessions} session(s), ${total.refreshTokens} refresh token(s) and ${total.auditEvents} audit event(s)`
    : 'another cleanup is running right now (an instance\'s, or another tessera cleanup); nothing done', { ran: total.ran, sessions: total.sessions, refresh_tokens: total.refreshTokens, audit_events: total.auditEvents })
}

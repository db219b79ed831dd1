/**
 * `tessera cleanup`: the periodic cleanup, run now.
 * @module
 */
import { cleanupExpired } from '../sessions/cleanup.js'
import type { CommandContext } from './context.js'
import { CliError, commandFlags } from './output.js'

const USAGE = 'usage: tessera cleanup'

export async function cleanupCommand (ctx: CommandContext): Promise<void> {
  commandFlags(ctx.argv, USAGE)
  if (ctx.args.length > 0) throw new CliError(USAGE, 2)
  const { db } = await ctx.connection()
  const result = await cleanupExpired(db, { now: new Date(), revokedRetention: ctx.config.revokedRetention, auditRetention: ctx.config.auditRetention, by: { actor: 'operator', userAgent: 'tessera-cli' } })
  ctx.out.result(result.ran
    ? `deleted ${result.sessions} session(s), ${result.refreshTokens} refresh token(s) and ${result.auditEvents} audit event(s)`
    : 'another instance is cleaning up right now; nothing done', { ran: result.ran, sessions: result.sessions, refresh_tokens: result.refreshTokens, audit_events: result.auditEvents })
}

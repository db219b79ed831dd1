/**
 * `tessera cleanup`: the periodic cleanup, run now.
 * @module
 */
import { cleanupExpired } from '../sessions/cleanup.js'
import type { CommandContext } from './main.js'

export async function cleanupCommand (ctx: CommandContext): Promise<void> {
  const { db } = await ctx.connection()
  const result = await cleanupExpired(db, { now: new Date(), revokedRetention: ctx.config.revokedRetention })
  ctx.out.result(result.ran
    ? `deleted ${result.sessions} session(s) and ${result.refreshTokens} refresh token(s)`
    : 'another instance is cleaning up right now; nothing done', { ran: result.ran, sessions: result.sessions, refresh_tokens: result.refreshTokens })
}

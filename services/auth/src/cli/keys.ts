/**
 * `tessera keys list`.
 * @module
 */
import type { CommandContext } from './main.js'
import { CliError, table } from './output.js'

export async function keysCommand (ctx: CommandContext): Promise<void> {
  const [action] = ctx.args
  if (action !== 'list') throw new CliError('usage: tessera keys list', 2)
  const { db } = await ctx.connection()
  const rows = await db.selectFrom('signing_keys')
    .select(['kid', 'state', 'bits', 'created_at', 'published_at', 'promoted_at', 'demoted_at', 'unpublished_at', 'revoked_at', 'private_key_enc'])
    .orderBy('created_at', 'desc').execute()
  const keys = rows.map((r) => ({
    kid: r.kid,
    state: r.state,
    bits: r.bits,
    created_at: r.created_at.toISOString(),
    published_at: r.published_at.toISOString(),
    promoted_at: r.promoted_at?.toISOString() ?? null,
    demoted_at: r.demoted_at?.toISOString() ?? null,
    unpublished_at: r.unpublished_at?.toISOString() ?? null,
    revoked_at: r.revoked_at?.toISOString() ?? null,
    private_half: r.private_key_enc !== null
  }))
  ctx.out.result(table(keys.map((k) => ({ kid: k.kid, state: k.state, bits: String(k.bits), created: k.created_at, promoted: k.promoted_at ?? '-', private: k.private_half ? 'yes' : 'erased' }))), keys)
}

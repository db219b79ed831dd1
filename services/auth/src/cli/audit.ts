/**
 * `tessera audit tail [--user U] [--limit N] [--json]`: the newest audit
 * events, oldest first.
 * @module
 */
import { tailAudit, type AuditRow } from '../audit/tail.js'
import type { CommandContext } from './context.js'
import { CliError, parseCommandLine, formatTable, type CommandSyntax } from './output.js'

const USAGE = 'usage: tessera audit tail [--user USERNAME|USER_ID] [--limit N] [--json]'
const SYNTAX: CommandSyntax = { command: 'audit', actions: ['tail'], usage: USAGE }

function parse (argv: string[]): { user: string | undefined, limit: number } {
  const parsed = parseCommandLine({ args: argv, allowPositionals: true, strict: true, options: { user: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } } }, SYNTAX)
  const [action, ...extra] = parsed.positionals
  if (action !== 'tail' || extra.length > 0) throw new CliError(USAGE, 2)
  const limitText = parsed.values.limit ?? '50'
  if (!/^\d{1,5}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 10000) {
    throw new CliError('--limit: expected a whole number from 1 to 10000', 2)
  }
  // A blank one (an unset shell variable) would match no one and list nothing, as if the user had no events.
  if (parsed.values.user?.trim() === '') throw new CliError(`--user: expected a username or a user id\n${USAGE}`, 2)
  return { user: parsed.values.user, limit: Number(limitText) }
}

function toJson (row: AuditRow): Record<string, unknown> {
  return {
    id: row.id,
    occurred_at: row.occurredAt.toISOString(),
    type: row.type,
    actor: row.actor,
    user_id: row.userId,
    username: row.username,
    session_id: row.sessionId,
    kid: row.kid,
    ip: row.ip,
    user_agent: row.userAgent,
    request_id: row.requestId,
    detail: row.detail,
    known_as: row.knownAs
  }
}

/** A user id as the operator knows it: its name beside it, where one is known. */
function named (id: string | null, row: AuditRow): string | undefined {
  if (id === null) return undefined
  return id === row.userId && row.knownAs !== null ? `${row.knownAs} (${id})` : id
}

export async function auditCommand (ctx: CommandContext): Promise<void> {
  const options = parse(ctx.argv)
  const { db } = await ctx.connection()
  const rows = await tailAudit(db, options)
  ctx.out.result(formatTable(rows.map((r) => ({
    time: r.occurredAt.toISOString(),
    type: r.type,
    actor: named(r.actor, r) ?? '-',
    user: r.username ?? named(r.userId, r) ?? '-',
    session: r.sessionId ?? '-',
    key: r.kid ?? '-',
    ip: r.ip ?? '-',
    request: r.requestId ?? '-',
    detail: Object.keys(r.detail).length === 0 ? '' : JSON.stringify(r.detail)
  }))), rows.map(toJson))
}

/**
 * `tessera clients create|list|show|rotate-secret|disable|enable|delete`. A secret
 * is printed once, by create or rotate-secret, and never again.
 * @module
 */
import { parseDuration } from '../config.js'
import { deleteClient, disableClient } from '../clients/end.js'
import { enableClient } from '../clients/enable.js'
import { findClient, listClients, type ClientView } from '../clients/find.js'
import { acceptableClientId, ClientRuleError, createClient, refuseIssuerResource } from '../clients/register.js'
import { replaceCurrentSecret, rotateClientSecret } from '../clients/rotate-secret.js'
import type { CommandContext } from './context.js'
import { CliError, parseCommandLine, formatTable, refuseForeignFlags, type CommandSyntax } from './output.js'

const USAGE = 'usage: tessera clients create CLIENT_ID [--confidential] [--grants G,G] [--scopes "a b"] [--resources URI,URI] | list | show ID | rotate-secret ID [--grace 24h] [--keep-old] | disable ID | enable ID | delete ID'
const OPERATOR = { actor: 'operator', userAgent: 'tessera-cli' }

function asJson (client: ClientView): Record<string, unknown> {
  return {
    client_id: client.clientId,
    type: client.confidential ? 'confidential' : 'public',
    grants: client.grants,
    scopes: client.scopes,
    resources: client.resources,
    created_at: client.createdAt.toISOString(),
    secret_rotated_at: client.secretRotatedAt?.toISOString() ?? null,
    previous_secret_expires_at: client.previousSecretExpiresAt?.toISOString() ?? null,
    disabled_at: client.disabledAt?.toISOString() ?? null
  }
}

function describe (client: ClientView, now: Date): string {
  const previous = client.previousSecretExpiresAt
  return [
    `client_id   ${client.clientId}`,
    `type        ${client.confidential ? 'confidential' : 'public'}${client.disabledAt === null ? '' : ` (disabled ${client.disabledAt.toISOString()})`}`,
    `grants      ${client.grants.join(' ')}`,
    `scopes      ${client.scopes.join(' ') || '(none)'}`,
    `resources   ${client.resources.join(' ') || '(the default audience only)'}`,
    `created     ${client.createdAt.toISOString()}`,
    ...(previous === null ? [] : [`old secret  ${previous > now ? 'works until' : 'stopped working at'} ${previous.toISOString()}`])
  ].join('\n')
}

/** What an enable did not do, said where the operator reads that it was done (docs/decisions.md, "clients enable"). */
function enabledNote (id: string, confidential: boolean): string {
  const sessions = 'the sessions its disable ended stay ended'
  return confidential
    ? `${sessions}; its secrets are unchanged: if it was disabled because a secret leaked, run \`tessera clients rotate-secret ${id} --grace 0\` now`
    : `${sessions} (its users log in again)`
}

const list = (text: string | undefined): string[] => (text ?? '').split(/[\s,]+/).filter((s) => s !== '')

/**
 * `--scopes` as a token request's `scope` is read (RFC 6749 §3.3): names
 * separated by spaces, runs and ends forgiven; a tab or any other character
 * outside a scope-token is then refused by the registration, not taken as a
 * separator. A comma separated scopes here before: refused rather than
 * silently kept as part of one name.
 */
function scopeList (text: string): string[] {
  const scopes = text.split(' ').filter((s) => s !== '')
  const withComma = scopes.find((s) => s.includes(','))
  if (withComma !== undefined) throw new CliError(`scopes: ${JSON.stringify(withComma)}: separate scopes with spaces, not commas (--scopes "a b")`, 2)
  return scopes
}

/**
 * The flags whose value can never be a flag (a duration, grant names,
 * URIs): given as `--grace -5`, Node's parser refuses it as ambiguous before
 * the value can be checked, so such a value is passed as `--grace=-5` is and
 * gets the flag's own message. `--scopes` is not among them (`-x` is a scope
 * name), and `--grace --json` stays a missing value.
 */
const NEVER_FLAG_VALUES = new Set(['--grace', '--grants', '--resources'])
function joinDashedValues (argv: readonly string[]): string[] {
  const joined: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    const next = argv[i + 1]
    if (arg === '--') return [...joined, ...argv.slice(i)]
    if (NEVER_FLAG_VALUES.has(arg) && next !== undefined && /^-(?!-)/.test(next)) {
      joined.push(`${arg}=${next}`)
      i++
    } else {
      joined.push(arg)
    }
  }
  return joined
}

/** Each action's own flags (`--json` is every command's); any other, or a word past its arguments, is a usage error, not ignored. */
const ACTION_FLAGS: Record<string, readonly string[]> = {
  list: [],
  create: ['confidential', 'grants', 'scopes', 'resources'],
  show: [],
  'rotate-secret': ['grace', 'keep-old'],
  disable: [],
  enable: [],
  delete: []
}
const SYNTAX: CommandSyntax = { command: 'clients', actions: Object.keys(ACTION_FLAGS), usage: USAGE }

function options (ctx: CommandContext): { values: Record<string, string | boolean | undefined>, id: string | undefined } {
  const { values, positionals } = parseCommandLine({
    args: joinDashedValues(ctx.argv),
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      confidential: { type: 'boolean' },
      grants: { type: 'string' },
      scopes: { type: 'string' },
      resources: { type: 'string' },
      grace: { type: 'string' },
      'keep-old': { type: 'boolean' }
    }
  }, SYNTAX)
  const [action] = positionals
  const own = action === undefined ? undefined : ACTION_FLAGS[action]
  if (own === undefined || positionals.length !== (action === 'list' ? 1 : 2)) throw new CliError(USAGE, 2)
  refuseForeignFlags(SYNTAX, action ?? '', values, own)
  return { values, id: positionals[1] }
}

/** A registration rule broken on the command line is a usage error (exit 2). */
function asUsage (check: () => void): void {
  try {
    check()
  } catch (err) {
    if (err instanceof ClientRuleError) throw new CliError(err.message, 2)
    throw err
  }
}

function graceSeconds (given: string | boolean | undefined): number {
  const seconds = parseDuration(typeof given === 'string' ? given : '24h')
  if (seconds === undefined) throw new CliError('--grace: expected a duration such as 0, 300s, 1h or 24h', 2)
  return seconds
}

/** With --keep-old, --grace is the kept secret's new deadline from now; without it, the deadline stays as it is. */
function keptGraceSeconds (given: string | boolean | undefined): number | undefined {
  if (given === undefined) return undefined
  const seconds = graceSeconds(given)
  if (seconds === 0) throw new CliError('--grace 0 with --keep-old would drop the old secret it keeps', 2)
  return seconds
}

export async function clientsCommand (ctx: CommandContext): Promise<void> {
  const [action] = ctx.args
  const { values, id } = options(ctx)
  if (action === 'list') {
    const { db } = await ctx.connection()
    const clients = await listClients(db)
    ctx.out.result(formatTable(clients.map((c) => ({
      client_id: c.clientId,
      type: c.confidential ? 'confidential' : 'public',
      grants: c.grants.join(','),
      resources: c.resources.join(','),
      state: c.disabledAt === null ? 'enabled' : 'disabled'
    }))), clients.map(asJson))
    return
  }
  if (id === undefined || !['create', 'show', 'rotate-secret', 'disable', 'enable', 'delete'].includes(action ?? '')) throw new CliError(USAGE, 2)
  // An id that no client can have is found before the database is opened, as a username no user can have is.
  asUsage(() => { acceptableClientId(id) })
  // A bad duration is a usage error, found before a database is opened.
  const keepOld = values['keep-old'] === true
  const grace = action === 'rotate-secret' && !keepOld ? graceSeconds(values.grace) : 0
  const keptGrace = action === 'rotate-secret' && keepOld ? keptGraceSeconds(values.grace) : undefined
  const scopes = values.scopes === undefined ? ctx.config.scopes : scopeList(values.scopes as string)
  const resources = list(values.resources as string | undefined)
  // The CLI reads the settings the server does, so it knows the issuer every grant compares a resource with.
  asUsage(() => { refuseIssuerResource(resources, ctx.config.issuer) })
  const { db } = await ctx.connection()
  // The changes below read the clock themselves, once they hold the client's row.
  const clock = await ctx.clock()
  if (action === 'create') {
    const confidential = values.confidential === true
    const input = {
      clientId: id,
      confidential,
      grants: values.grants === undefined ? (confidential ? ['client_credentials'] : ['password', 'refresh_token']) : list(values.grants as string),
      scopes,
      resources
    }
    let created: Awaited<ReturnType<typeof createClient>>
    try {
      created = await createClient(db, input, clock(), OPERATOR)
    } catch (err) {
      if (err instanceof ClientRuleError) throw new CliError(err.message, 2)
      throw err
    }
    if (!created.created) throw new CliError(`a client named ${id} already exists`)
    const client = await findClient(db, id)
    if (client === undefined) throw new CliError(`client ${id} vanished`)
    ctx.out.result(
      `${describe(client, clock())}${created.secret === undefined ? '' : `\nclient_secret ${created.secret}\n(shown once: store it now; only its digest is kept)`}`,
      { ...asJson(client), ...(created.secret === undefined ? {} : { client_secret: created.secret }) })
    return
  }
  if (action === 'show') {
    const client = await findClient(db, id)
    if (client === undefined) throw new CliError(`no client named ${id}`)
    ctx.out.result(describe(client, clock()), asJson(client))
    return
  }
  if (action === 'rotate-secret') {
    const rotated = keepOld
      ? await replaceCurrentSecret(db, { clientId: id, graceSeconds: keptGrace, clock }, OPERATOR)
      : await rotateClientSecret(db, { clientId: id, graceSeconds: grace, clock }, OPERATOR)
    if (rotated.kind === 'unknown') throw new CliError(`no client named ${id}`)
    if (rotated.kind === 'public') throw new CliError(`${id} is a public client: it has no secret`)
    if (rotated.kind === 'no_old_secret') throw new CliError(`client ${id} has no old secret in its grace period; rotate without --keep-old`)
    const until = rotated.previousExpiresAt?.toISOString() ?? null
    const replaced = keepOld ? 'the secret it replaces no longer works; ' : ''
    ctx.out.result(`client_secret ${rotated.secret}\n(shown once) ${replaced}the old secret ${until === null ? 'no longer works' : `works until ${until}`}`,
      { client_id: id, client_secret: rotated.secret, previous_secret_expires_at: until })
    return
  }
  if (action === 'enable') {
    const enabled = await enableClient(db, id, OPERATOR)
    if (enabled === undefined) throw new CliError(`no client named ${id}`)
    ctx.out.result(enabled.changed ? `enabled ${id}; ${enabledNote(id, enabled.confidential)}` : `already enabled ${id}`, { client_id: id, enabled: true, was_disabled: enabled.changed })
    return
  }
  const ended = action === 'disable' ? await disableClient(db, id, clock, OPERATOR) : await deleteClient(db, id, clock, OPERATOR)
  if (ended === undefined) throw new CliError(`no client named ${id}`)
  const verb = action === 'disable' ? (ended.changed ? 'disabled' : 'already disabled') : 'deleted'
  ctx.out.result(`${verb} ${id}; ended ${ended.sessionsEnded} session(s)`, { client_id: id, [action === 'disable' ? 'disabled' : 'deleted']: true, sessions_ended: ended.sessionsEnded })
}

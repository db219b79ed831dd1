/**
 * `tessera db`: the local embedded Postgres (start, stop, its URL) and the
 * database roles (as a superuser, on any Postgres).
 * @module
 */
import { startEmbeddedPostgres, stopEmbeddedPostgres } from '../db/embedded.js'
import { instanceConnections } from '../cluster/pool.js'
import type { CommandContext } from './context.js'
import { CliError, commandFlags } from './output.js'

function rolePassword (value: string | undefined, variable: string): string {
  if (value === undefined) throw new CliError(`${variable} is required for \`tessera db roles\``)
  return value
}

async function dbRolesCommand (ctx: CommandContext): Promise<void> {
  // Here, not at the top: start, stop and url load no query builder.
  const { DEFAULT_ROLE_NAMES, ensureRoles } = await import('../db/roles.js')
  const passwords = ctx.config.dbRolePasswords
  const roles = {
    owner: { name: DEFAULT_ROLE_NAMES.owner, password: rolePassword(passwords.owner, 'TESSERA_DB_OWNER_PASSWORD') },
    runtime: { name: DEFAULT_ROLE_NAMES.runtime, password: rolePassword(passwords.runtime, 'TESSERA_DB_APP_PASSWORD') },
    notes: { name: DEFAULT_ROLE_NAMES.notes, password: rolePassword(passwords.notes, 'TESSERA_DB_NOTES_PASSWORD') }
  }
  const { db } = await ctx.connection()
  await ensureRoles(db, roles)
  ctx.out.result(`roles ready: ${roles.owner.name} (migrations), ${roles.runtime.name} (Tessera), ${roles.notes.name} (notes)`,
    { owner: roles.owner.name, runtime: roles.runtime.name, notes: roles.notes.name })
}

const DB_USAGE = 'usage: tessera db start|stop|url|roles'
const DB_ACTIONS = ['start', 'stop', 'url', 'roles']

function withoutPassword (url: string): string {
  const parsed = new URL(url)
  parsed.password = ''
  return parsed.toString()
}

export async function dbCommand (ctx: CommandContext): Promise<void> {
  commandFlags(ctx.argv, { command: 'db', actions: DB_ACTIONS, usage: DB_USAGE })
  const [action] = ctx.args
  // A wrong word is a usage error whatever the settings: told before DATABASE_URL is.
  if (ctx.args.length !== 1 || !DB_ACTIONS.includes(action ?? '')) throw new CliError(DB_USAGE, 2)
  if (action === 'roles') return await dbRolesCommand(ctx)
  if (ctx.config.databaseUrl !== undefined) throw new CliError('DATABASE_URL is set: there is no embedded Postgres to manage')
  if (action === 'start' || action === 'url') {
    // Sized for the instance this checkout's settings would start on it, which adopts it as it is.
    const pg = await startEmbeddedPostgres(ctx.config.dataDir, instanceConnections(ctx.config.workers))
    // `url` is asked for the URL, for a program to read ($(tessera db url)), and so is --json (make stack reads it);
    // start's lines are for a person's terminal, its scrollback and what is shared of it: the password stays in its file.
    const started = `embedded Postgres ${pg.started ? 'started' : 'already running'} on 127.0.0.1:${pg.port}\n` +
      `URL: ${withoutPassword(pg.url)} (the password is in ${pg.passwordFile}; \`tessera db url\` prints the URL with it)`
    ctx.out.result(action === 'url' ? pg.url : started, { url: pg.url, port: pg.port, started: pg.started })
    return
  }
  const stopped = await stopEmbeddedPostgres(ctx.config.dataDir)
  ctx.out.result(stopped ? 'embedded Postgres stopped' : 'embedded Postgres was not running', { stopped })
}

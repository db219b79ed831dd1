/**
 * `tessera`: operator commands. Each one opens the database named by the
 * same settings the server reads (the embedded one when DATABASE_URL is
 * unset), does one thing, prints a short result (`--json` for machines) and
 * exits non-zero on failure.
 * @module
 */
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig, type Config } from '../config.js'
import { connect, type Connection } from '../db/connect.js'
import { startEmbeddedPostgres, stopEmbeddedPostgres } from '../db/embedded.js'
import { WrongKekError } from '../keys/kek.js'
import { databaseFor } from '../db/locate.js'
import { DEFAULT_ROLE_NAMES, ensureRoles } from '../db/roles.js'
import { CliError, output, type Output } from './output.js'
import { migrateCommand } from './migrate.js'
import { usersCommand } from './users.js'
import { keysCommand } from './keys.js'
import { cleanupCommand } from './cleanup.js'
import { auditCommand } from './audit.js'
import { clientsCommand } from './clients.js'

const USAGE = `usage: tessera <command> [--json]

  migrate up|down|status          apply, revert the newest, or list migrations
  users create USERNAME           create a user; the password is read from stdin
  users disable USERNAME          disable a user and end all their sessions
  keys list                       signing keys, their states and times
  keys rotate [--now]             publish a new key (it signs after TESSERA_KEY_PUBLISH_LEAD);
                                  --now: it signs at once (emergency: verifiers refetch the JWKS)
  keys revoke KID                 compromise: unpublish KID, end its sessions, replace it if it signs
  keys rewrap --new-kek-file F    re-encrypt every private half under the KEK in F
  cleanup                         delete expired sessions and refresh tokens now
  clients create ID [--confidential] [--grants G,G] [--scopes "a b"] [--resources URI,URI]
  clients list | show ID | rotate-secret ID [--grace 24h] | disable ID | delete ID
  audit tail [--user U] [--limit N]  the newest audit events (default 50), oldest first
  db start|stop|url               the local embedded Postgres (when DATABASE_URL is unset)
  db roles                        create the owner, runtime and notes roles (as a superuser; see docs/operators.md)
`

export interface CommandContext {
  config: Config
  args: string[]
  /** The arguments after the command name, flags included, for commands with options of their own. */
  argv: string[]
  out: Output
  /** Opens the database once, on first use. */
  connection: () => Promise<Connection>
}

function rolePassword (value: string | undefined, variable: string): string {
  if (value === undefined) throw new CliError(`${variable} is required for \`tessera db roles\``, 2)
  return value
}

async function dbRolesCommand (ctx: CommandContext): Promise<void> {
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

async function dbCommand (ctx: CommandContext): Promise<void> {
  if (ctx.args[0] === 'roles') return await dbRolesCommand(ctx)
  if (ctx.config.databaseUrl !== undefined) throw new CliError('DATABASE_URL is set: there is no embedded Postgres to manage')
  const [action] = ctx.args
  if (action === 'start' || action === 'url') {
    const pg = await startEmbeddedPostgres(ctx.config.dataDir)
    ctx.out.result(action === 'url' ? pg.url : `embedded Postgres ${pg.started ? 'started' : 'already running'} on 127.0.0.1:${pg.port}\nDATABASE_URL=${pg.url}`, { url: pg.url, port: pg.port, started: pg.started })
    return
  }
  if (action === 'stop') {
    const stopped = await stopEmbeddedPostgres(ctx.config.dataDir)
    ctx.out.result(stopped ? 'embedded Postgres stopped' : 'embedded Postgres was not running', { stopped })
    return
  }
  throw new CliError('usage: tessera db start|stop|url|roles', 2)
}

const COMMANDS: Record<string, (ctx: CommandContext) => Promise<void>> = {
  migrate: migrateCommand,
  users: usersCommand,
  keys: keysCommand,
  audit: auditCommand,
  clients: clientsCommand,
  db: dbCommand,
  cleanup: cleanupCommand
}

export async function runCli (argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: false, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } })
  const [name, ...args] = positionals
  const command = name === undefined ? undefined : COMMANDS[name]
  if (values.help === true || command === undefined) {
    process.stderr.write(USAGE)
    return values.help === true ? 0 : 2
  }
  const config = loadConfig(env)
  let opened: { connection: Connection, stop: () => Promise<void> } | undefined
  const ctx: CommandContext = {
    config,
    args,
    argv: argv.slice(argv.findIndex((a) => a === name) + 1),
    out: output(values.json === true),
    connection: async () => {
      if (opened === undefined) {
        const { url, embedded } = await databaseFor(config)
        const connection = connect(url, 4)
        opened = { connection, stop: async () => { await connection.close(); await embedded?.stop() } }
      }
      return opened.connection
    }
  }
  try {
    await command(ctx)
    return 0
  } finally {
    await opened?.stop()
  }
}

runCli(process.argv.slice(2), process.env).then((code) => { process.exitCode = code }, (err: unknown) => {
  const known = err instanceof CliError || err instanceof ConfigError || err instanceof WrongKekError
  process.stderr.write(`tessera: ${known || err instanceof Error ? (err as Error).message : String(err)}\n`)
  process.exitCode = err instanceof CliError ? err.exitCode : 1
})

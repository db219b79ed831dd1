/**
 * `tessera`: operator commands. Each one opens the database named by the
 * same settings the server reads (the embedded one when DATABASE_URL is
 * unset and it exists), does one thing, prints a short result (`--json` for
 * machines) and exits 0 done, 1 failed, 2 usage error. A command is one
 * entry in COMMANDS and its lines in USAGE, which are also its --help.
 * @module
 */
import { parseArgs } from 'node:util'
import type { Connection } from '../db/connect.js'
import type { DatabaseClock } from '../db/database-clock.js'
import { VERSION } from '../version.js'
import { databaseUnreachable } from '../errors.js'
import { onProcessWarning } from '../util/process-warnings.js'
import type { CommandContext } from './context.js'
import { CliError, commandOutput, printable } from './output.js'

/** What may come before the command's name. */
const GLOBAL_FLAGS = new Set(['--json', '--help', '-h', '--version'])

const USAGE = `usage: tessera <command> [--json]
       tessera --version | --help | <command> --help

  migrate up|status               apply pending migrations, or list them
  migrate down --yes              revert the newest migration (it drops tables and their data)
  users list [--disabled]         every user (or only the disabled ones) with their live sessions
  users create USERNAME           create a user; the password is read from stdin
  users show USERNAME             one user: id, times, state, live sessions, login back-off
  users disable USERNAME          disable a user and end all their sessions
  users import FILE [--format django|csv] [--dry-run]
                                  import users with their Django password hashes
  users enable USERNAME           let a disabled user log in again
  users unlock USERNAME           lift the login back-off failed logins put on a user (password and sessions kept)
  users delete USERNAME           delete a user with their sessions (the audit trail stays)
  users set-password USERNAME     replace the password (read from stdin) and end all sessions
  users end-sessions USERNAME     end every session of a user
  keys list                       signing keys, their states and times
  keys rotate [--now]             publish a new key (it signs after TESSERA_KEY_PUBLISH_LEAD);
                                  --now: it signs at once (emergency: verifiers refetch the JWKS)
  keys revoke KID                 compromise: unpublish KID, end its sessions, replace it if it signs
  keys rewrap --new-kek-file F    re-encrypt every private half under the KEK in F
  cleanup                         delete expired sessions, refresh tokens and old audit events now
  clients create ID [--confidential] [--grants G,G] [--scopes "a b"] [--resources URI,URI]
  clients list | show ID | rotate-secret ID [--grace 24h] [--keep-old] | disable ID | enable ID | delete ID
                                  --keep-old: replace the current secret, keep the old one (a rotation's output was lost)
                                  enable: let a disabled client in again (its ended sessions stay ended, its secrets unchanged)
  audit tail [--user U] [--limit N]  the newest audit events (default 50), oldest first
  db start|stop|url               the local embedded Postgres (when DATABASE_URL is unset; url starts it if it is down)
  db roles                        create the owner, runtime and notes roles (as a superuser; see docs/operators.md)

Every command prints JSON with --json. Exit status: 0 done, 1 failed, 2 usage error.
The database is DATABASE_URL (or DATABASE_URL_FILE); when neither is set, the
embedded Postgres under TESSERA_DATA_DIR, once \`tessera db start\` or \`make run\` made it.
`

/** The lines of USAGE about one command, continuation lines included: its --help. */
function commandUsage (name: string): string {
  const lines = USAGE.split('\n')
  const own: string[] = []
  lines.forEach((line, i) => {
    const starts = line.startsWith(`  ${name} `)
    const continues = /^ {3,}\S/.test(line) && own.includes(lines[i - 1] ?? '')
    if (starts || continues) own.push(line)
  })
  return `usage: tessera <command> [--json]\n\n${own.join('\n')}\n`
}

type Command = (ctx: CommandContext) => Promise<void>

/**
 * Each command's module, loaded when that command runs: `--help`,
 * `--version` and the embedded Postgres's `db` commands then load none of
 * the query builder, the hashers or the other commands (docs/decisions.md,
 * "The CLI loads only the command it runs").
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  migrate: async () => (await import('./migrate.js')).migrateCommand,
  users: async () => (await import('./users.js')).usersCommand,
  keys: async () => (await import('./keys.js')).keysCommand,
  audit: async () => (await import('./audit.js')).auditCommand,
  clients: async () => (await import('./clients.js')).clientsCommand,
  db: async () => (await import('./db.js')).dbCommand,
  cleanup: async () => (await import('./cleanup.js')).cleanupCommand
}

/**
 * A kid is base64url, so it may begin with "-" (or even be "-h…"): the
 * argument after `keys revoke` is the kid whatever it looks like, and moves
 * behind a `--` so that no option parser reads it as flags. A `--` already
 * there is the user's own and is kept. `--help` and `-h` alone stay flags:
 * a kid is a 43-character thumbprint, never either of them.
 */
function kidAsOperand (argv: string[]): string[] {
  const at = argv.findIndex((arg, i) => arg === 'revoke' && argv[i - 1] === 'keys')
  const kid = at < 0 ? undefined : argv[at + 1]
  if (kid === undefined || kid === '--' || kid === '--help' || kid === '-h' || !kid.startsWith('-')) return argv
  return [...argv.slice(0, at + 1), ...argv.slice(at + 2), '--', kid]
}

/**
 * The directory the operator typed the command in. `npm run tessera -- …`
 * (how README and operators.md give every command) runs it from the project
 * root wherever it was typed, and keeps the shell's directory in INIT_CWD; a
 * relative file name means that directory. INIT_CWD only when npm started
 * this script: a child of some other npm script inherits the variable too.
 */
function typedIn (env: NodeJS.ProcessEnv): string {
  const initial = env.INIT_CWD
  return env.npm_lifecycle_event === 'tessera' && initial !== undefined && initial !== '' ? initial : process.cwd()
}

async function runCli (rawArgv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const argv = kidAsOperand(rawArgv)
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: false, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } } })
  const [name, ...args] = positionals
  const loadCommand = name === undefined || !Object.hasOwn(COMMANDS, name) ? undefined : COMMANDS[name]
  if (name !== undefined && loadCommand === undefined) throw new CliError(`unknown command ${JSON.stringify(name)} (see tessera --help)`, 2)
  // --help prints the usage as text on stdout and exits 0, whatever else is
  // on the line (--json, --version, a flag the command does not take): one
  // asking how a command works is answered, not told off or given JSON.
  if (values.help === true) {
    process.stdout.write(name === undefined ? USAGE : commandUsage(name))
    return 0
  }
  // A flag before the command (or with none) that is not tessera's own.
  const foreign = (name === undefined ? argv : argv.slice(0, argv.indexOf(name))).find((arg) => !GLOBAL_FLAGS.has(arg))
  if (name === undefined || loadCommand === undefined) {
    if (foreign !== undefined) throw new CliError(`${foreign} is not a flag of tessera\n${USAGE.trimEnd()}`, 2)
    if (values.version === true) {
      commandOutput(values.json === true).result(`tessera ${VERSION}`, { version: VERSION })
      return 0
    }
    process.stderr.write(USAGE)
    return 2
  }
  // A command's own flag typed before its name would be dropped, not read: `tessera --dry-run users import` must not import.
  if (foreign !== undefined) throw new CliError(`${JSON.stringify(foreign)} is not a flag of tessera itself: put a command's flags after its name (tessera ${name} --help)`, 2)
  // Before a command, --version would be dropped and the command run: it is tessera's, alone.
  if (values.version === true) throw new CliError('--version takes no command: tessera --version', 2)
  const { loadConfig } = await import('../config.js')
  const config = loadConfig(env)
  const command = await loadCommand()
  let opened: { connection: Connection, stop: () => Promise<void> } | undefined
  let databaseClock: DatabaseClock | undefined
  const ctx: CommandContext = {
    config,
    args,
    argv: argv.slice(argv.findIndex((a) => a === name) + 1),
    out: commandOutput(values.json === true),
    workingDirectory: typedIn(env),
    connection: async () => {
      opened ??= await (await import('./database.js')).openDatabase(config)
      return opened.connection
    },
    clock: async () => {
      databaseClock ??= await (await import('../db/database-clock.js')).DatabaseClock.read((await ctx.connection()).db)
      return databaseClock.now
    }
  }
  try {
    await command(ctx)
    return 0
  } catch (err) {
    // A table missing from public may be in another schema, where a search_path of the deployment's own put it,
    // or hidden from a role without USAGE on public (notes'): say that, not "run migrate up".
    // The look's own failure leaves the command's error to be said.
    if (opened !== undefined && (err as { code?: unknown }).code === '42P01') {
      const { refuseSchemaElsewhere, SchemaElsewhereError, SchemaOutOfReachError } = await import('../db/migrate.js')
      await refuseSchemaElsewhere(opened.connection.db).catch((refusal: unknown) => { if (refusal instanceof SchemaElsewhereError || refusal instanceof SchemaOutOfReachError) throw refusal })
    }
    throw err
  } finally {
    await opened?.stop()
  }
}

/** Postgres's undefined_table, on a database no `migrate up` has prepared: say what to run instead of which relation is missing. */
function schemaMissing (err: unknown): string | undefined {
  return (err as { code?: unknown }).code === '42P01'
    ? `the database has no Tessera tables yet (${(err as Error).message}): run \`tessera migrate up\` first`
    : undefined
}

/**
 * Postgres's insufficient_privilege: the command ran as a role the operator
 * did not mean (migrations as the runtime role is the usual slip), and the
 * server's words name only the object.
 */
function privilegeMissing (err: unknown): string | undefined {
  return (err as { code?: unknown }).code === '42501'
    ? `${(err as Error).message}: the role in DATABASE_URL may not do this; \`tessera migrate\` runs as the owner role, \`tessera db roles\` as a superuser, every other command as the runtime role (operators.md, "Database roles")`
    : undefined
}

// A warning (a dependency's deprecation, a MaxListenersExceededWarning) is
// one line on stderr like the CLI's other words there, not Node's several;
// stdout stays the command's output alone, so --json's stays JSON.
onProcessWarning((warning) => {
  const code = typeof warning.code === 'string' ? ` [${warning.code}]` : ''
  const detail = typeof warning.detail === 'string' ? `; ${warning.detail}` : ''
  process.stderr.write(`tessera: ${printable(`${warning.name}${code}: ${warning.message}${detail}`.replace(/\s*\n\s*/g, ' '))}\n`)
})

// A reader that stops early (`audit tail --json | head`) closes the pipe: the
// rest of the output is not wanted, which is no error. The command still runs
// to its end and exits with its own code.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err
})

runCli(process.argv.slice(2), process.env).then((code) => { process.exitCode = code }, (err: unknown) => {
  // A flag parseArgs does not know is a usage error like any other.
  const usage = (err as { code?: unknown }).code?.toString().startsWith('ERR_PARSE_ARGS') === true
  // Line by line: a usage error's second line is the usage.
  const message = databaseUnreachable(err) ?? schemaMissing(err) ?? privilegeMissing(err) ?? (err instanceof Error ? err.message : String(err))
  process.stderr.write(`tessera: ${message.split('\n').map(printable).join('\n')}\n`)
  process.exitCode = err instanceof CliError ? err.exitCode : usage ? 2 : 1
})

/**
 * `tessera users …`: create, list, show, disable, enable, unlock, delete,
 * set-password (passwords from stdin), end-sessions; `import` lives in users-import.ts.
 * @module
 */
import { PasswordHasher } from '../passwords/hasher.js'
import { acceptableUsername } from '../passwords/policy.js'
import { ProblemError } from '../errors.js'
import type { Db } from '../db/database.js'
import { backoffPolicy, loginBackoff, type BackoffState } from '../passwords/login-throttle.js'
import { createUser } from '../users/create.js'
import { disableUser } from '../users/disable.js'
import { deleteUser, enableUser, endUserSessions, listUserPages, setPassword, showUser, userListExtent, type UserSummary } from '../users/manage.js'
import { unlockUser } from '../users/unlock.js'
import type { CommandContext } from './context.js'
import { CliError, commandFlags, parseCommandLine, writeListing, type CommandSyntax } from './output.js'
import { readPassword } from './password-input.js'

const USAGE = 'usage: tessera users list [--disabled] | create|show|disable|enable|unlock|delete|set-password|end-sessions USERNAME | import FILE [--format django|csv] [--dry-run]'
const OPERATOR = { actor: 'operator', userAgent: 'tessera-cli' }

function userJson (user: UserSummary): Record<string, unknown> {
  return {
    id: user.id,
    username: user.username,
    created_at: user.createdAt.toISOString(),
    password_changed_at: user.passwordChangedAt.toISOString(),
    disabled_at: user.disabledAt?.toISOString() ?? null,
    live_sessions: user.liveSessions
  }
}

/** What `show` adds to a user's fields: their login back-off, read with them (`list` leaves it out, as it reads every user). */
function backoffJson (backoff: BackoffState): Record<string, unknown> {
  return { login_failures: backoff.failures, backed_off_until: backoff.backedOffUntil?.toISOString() ?? null }
}

/** To the second, as people read it. */
const shortTime = (date: Date): string => date.toISOString().slice(0, 19).replace('T', ' ')

function userRow (user: UserSummary): Record<string, string> {
  return {
    username: user.username,
    id: user.id,
    created: shortTime(user.createdAt),
    state: user.disabledAt === null ? 'enabled' : 'disabled',
    sessions: String(user.liveSessions)
  }
}

const taken = (username: string): CliError => new CliError(`username: ${username} is already taken`)

/** A policy refusal (weak password, taken name) is the operator's one-line error, not a crash; a taken name is named. */
async function asCliError<T> (work: () => Promise<T>, username: string): Promise<T> {
  try {
    return await work()
  } catch (err) {
    if (err instanceof ProblemError) throw err.status === 409 ? taken(username) : new CliError(err.publicDetail ?? err.title)
    throw err
  }
}

/** A name that can never be a user's is a mistake on the command line (exit 2), found before the database is opened or the password asked for. */
function typedUsername (username: string): void {
  try {
    acceptableUsername(username)
  } catch (err) {
    if (err instanceof ProblemError) throw new CliError(err.publicDetail ?? err.title, 2)
    throw err
  }
}

function found<T> (user: T | undefined, username: string): T {
  if (user === undefined) throw new CliError(`no user named ${username}`)
  return user
}

type UserAction = (ctx: CommandContext, db: Db, username: string) => Promise<void>

const ACTIONS: Record<string, UserAction> = {
  create: async (ctx, db, username) => {
    // Looked up before the prompt, so no one types a password only to be told the name is taken; createUser still refuses a name taken since.
    if (await showUser(db, username, (await ctx.clock())()) !== undefined) throw taken(username)
    const password = await readPassword()
    const user = await asCliError(async () => await createUser(db, new PasswordHasher({ concurrency: 1, depth: 1 }), { username, password }, OPERATOR), username)
    ctx.out.result(`created user ${user.username} (${user.id})`, { id: user.id, username: user.username })
  },
  show: async (ctx, db, username) => {
    const now = (await ctx.clock())()
    const user = found(await showUser(db, username, now), username)
    const shown = { ...userJson(user), ...backoffJson(await loginBackoff(db, user.username, now, backoffPolicy(ctx.config))) }
    ctx.out.result(Object.entries(shown).map(([k, v]) => `${k}: ${String(v ?? '-')}`).join('\n'), shown)
  },
  disable: async (ctx, db, username) => {
    const disabled = found(await disableUser(db, username, await ctx.clock(), OPERATOR), username)
    ctx.out.result(`${disabled.alreadyDisabled ? 'already disabled' : 'disabled'} ${disabled.username}; ended ${disabled.sessionsEnded} session(s)`,
      { id: disabled.id, username: disabled.username, sessions_ended: disabled.sessionsEnded, already_disabled: disabled.alreadyDisabled })
  },
  enable: async (ctx, db, username) => {
    const enabled = found(await enableUser(db, username, OPERATOR), username)
    ctx.out.result(`${enabled.wasDisabled ? 'enabled' : 'already enabled'} ${enabled.username}`, { id: enabled.id, username: enabled.username, was_disabled: enabled.wasDisabled })
  },
  unlock: async (ctx, db, username) => {
    const unlocked = found(await unlockUser(db, username, await ctx.clock(), backoffPolicy(ctx.config), OPERATOR), username)
    const { failures, backedOffUntil } = unlocked.cleared
    const cleared = failures === 0
      ? `${unlocked.username} was not backed off, no failed logins to clear`
      : `unlocked ${unlocked.username}: cleared ${failures} failed login(s); ${backedOffUntil === null ? 'was not backed off' : `was backed off until ${backedOffUntil.toISOString()}`}`
    ctx.out.result(`${cleared}${unlocked.disabled ? `; still disabled (tessera users enable ${unlocked.username} lets them log in)` : ''}`,
      { id: unlocked.id, username: unlocked.username, failures_cleared: failures, was_backed_off_until: backedOffUntil?.toISOString() ?? null, disabled: unlocked.disabled })
  },
  delete: async (ctx, db, username) => {
    const deleted = found(await deleteUser(db, username, await ctx.clock(), OPERATOR), username)
    ctx.out.result(`deleted ${deleted.username} (${deleted.id}); ended ${deleted.sessionsEnded} session(s)`, { id: deleted.id, username: deleted.username, deleted: true, sessions_ended: deleted.sessionsEnded })
  },
  'set-password': async (ctx, db, username) => {
    // As for create: the user is looked up before the prompt; setPassword still finds none if they are deleted meanwhile.
    found(await showUser(db, username, (await ctx.clock())()), username)
    const password = await readPassword('New password: ')
    const changed = found(await asCliError(async () => await setPassword(db, new PasswordHasher({ concurrency: 1, depth: 1 }), { username, password, clock: await ctx.clock() }, OPERATOR), username), username)
    ctx.out.result(`set the password of ${changed.username}; ended ${changed.sessionsEnded} session(s)`, { id: changed.id, username: changed.username, sessions_ended: changed.sessionsEnded })
  },
  'end-sessions': async (ctx, db, username) => {
    const ended = found(await endUserSessions(db, username, await ctx.clock(), OPERATOR), username)
    ctx.out.result(`ended ${ended.sessionsEnded} session(s) of ${ended.username}`, { id: ended.id, username: ended.username, sessions_ended: ended.sessionsEnded })
  }
}
const SYNTAX: CommandSyntax = { command: 'users', actions: ['list', 'import', ...Object.keys(ACTIONS)], usage: USAGE }

/** The length of every user id (a UUID's text). */
const ID_LENGTH = 36

/**
 * Streamed (writeListing), as the users of a production do not fit in
 * memory. The widths are those formatTable would find over every row: the
 * longest username and whether any user is disabled are asked first; ids
 * and times have one length; `sessions` is the last column, never padded.
 */
async function listUsers (ctx: CommandContext, db: Db, disabledOnly: boolean): Promise<void> {
  const extent = await userListExtent(db, { disabledOnly })
  const widths = {
    username: extent.longestUsername,
    id: ID_LENGTH,
    created: shortTime(new Date(0)).length,
    state: (extent.anyDisabled ? 'disabled' : 'enabled').length,
    sessions: 0
  }
  await writeListing(ctx.out, listUserPages(db, { disabledOnly, now: (await ctx.clock())() }), { widths, row: userRow, json: userJson })
}

export async function usersCommand (ctx: CommandContext): Promise<void> {
  const [action, username] = ctx.args
  // Loaded for import alone: its CSV and JSON stream parsers are no other action's.
  if (action === 'import') return await (await import('./users-import.js')).usersImportCommand(ctx)
  if (action === 'list') {
    // The whole command line, not what follows `list`: `users --json list` is `users list --json`, as for every other command.
    const { values } = parseCommandLine({ args: ctx.argv, allowPositionals: true, strict: true, options: { disabled: { type: 'boolean' }, json: { type: 'boolean' } } }, SYNTAX)
    if (ctx.args.length > 1) throw new CliError(USAGE, 2)
    const { db } = await ctx.connection()
    await listUsers(ctx, db, values.disabled === true)
    return
  }
  commandFlags(ctx.argv, SYNTAX)
  const run = action === undefined ? undefined : ACTIONS[action]
  if (run === undefined || username === undefined || ctx.args.length > 2) throw new CliError(USAGE, 2)
  // Every action looks its user up by the normalised name, so a name no user can have is refused the same way whatever the action.
  typedUsername(username)
  const { db } = await ctx.connection()
  await run(ctx, db, username)
}

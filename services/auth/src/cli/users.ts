/**
 * `tessera users create USERNAME` (password from stdin) and `users disable USERNAME`.
 * @module
 */
import { PasswordHasher } from '../passwords/hasher.js'
import { ProblemError } from '../errors.js'
import { createUser } from '../users/create.js'
import { disableUser } from '../users/disable.js'
import type { CommandContext } from './main.js'
import { CliError } from './output.js'
import { readPassword } from './password-input.js'
import { usersImportCommand } from './users-import.js'

export async function usersCommand (ctx: CommandContext): Promise<void> {
  const [action, username] = ctx.args
  if (action === 'import') return await usersImportCommand(ctx)
  if ((action !== 'create' && action !== 'disable') || username === undefined) {
    throw new CliError('usage: tessera users create|disable USERNAME | users import FILE', 2)
  }
  const { db } = await ctx.connection()
  const context = { actor: 'operator', userAgent: 'tessera-cli' }
  if (action === 'create') {
    const password = await readPassword()
    const hasher = new PasswordHasher({ concurrency: 1, depth: 1 })
    try {
      const user = await createUser(db, hasher, { username, password }, context)
      ctx.out.result(`created user ${user.username} (${user.id})`, { id: user.id, username: user.username })
    } catch (err) {
      if (err instanceof ProblemError) throw new CliError(err.detail ?? err.title)
      throw err
    }
    return
  }
  const disabled = await disableUser(db, username, new Date(), context)
  if (disabled === undefined) throw new CliError(`no user named ${username}`)
  ctx.out.result(`${disabled.alreadyDisabled ? 'already disabled' : 'disabled'} ${disabled.username}; ended ${disabled.sessionsEnded} session(s)`,
    { id: disabled.id, username: disabled.username, sessions_ended: disabled.sessionsEnded, already_disabled: disabled.alreadyDisabled })
}

/**
 * What every command is handed: the settings, its arguments, where to print,
 * and the database opened on first use.
 * @module
 */
import type { Config } from '../config.js'
import type { Connection } from '../db/connect.js'
import type { Output } from './output.js'

export interface CommandContext {
  config: Config
  args: string[]
  /** The arguments after the command name, flags included, for commands with options of their own. */
  argv: string[]
  out: Output
  /** Where a relative path on the command line is read from: the directory the command was typed in. */
  workingDirectory: string
  /** Opens the database once, on first use. */
  connection: () => Promise<Connection>
  /**
   * Postgres's clock (db/database-clock.ts), read once on first use: what a
   * command stores or compares is dated as the instances date it, whatever
   * this machine's clock says.
   */
  clock: () => Promise<() => Date>
}

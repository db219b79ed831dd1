/**
 * How every command answers: a short human line, or JSON with --json; a
 * failure is one line on stderr and a non-zero exit.
 * @module
 */
import { parseArgs, type ParseArgsConfig, type ParseArgsOptionsConfig } from 'node:util'
import { TesseraError } from '../errors.js'

export class CliError extends TesseraError {
  readonly code = 'ERR_CLI'

  constructor (message: string, readonly exitCode = 1) {
    super(message)
  }
}

/**
 * A command's arguments, strictly: a flag it does not take is a usage error
 * (exit 2, with the usage) before anything runs, never ignored (`users
 * delete bob --dry-run` must not delete bob).
 */
export function parseCommandLine<T extends ParseArgsConfig> (config: T, usage: string): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config)
  } catch (err) {
    // Node words some of these over several lines (a value that starts with a dash): one line, then the usage.
    throw new CliError(`${(err as Error).message.replace(/\s*\n\s*/g, ' ')}\n${usage}`, 2)
  }
}

/**
 * Parsed together, each action's flags are every action's: one that is not
 * the action's own (`--json` is every action's) is a usage error, never
 * ignored (`keys rotate --new-kek-file F` must not rotate and drop F).
 */
export function refuseForeignFlags (command: string, action: string, values: Record<string, unknown>, own: readonly string[], usage: string): void {
  const foreign = Object.keys(values).find((flag) => flag !== 'json' && !own.includes(flag))
  if (foreign !== undefined) throw new CliError(`--${foreign} is not a flag of ${command} ${action}\n${usage}`, 2)
}

/** The flags of a command that takes no options of its own beyond these; `--json` is every command's. */
export function commandFlags (argv: string[], usage: string, options: ParseArgsOptionsConfig = {}): Record<string, string | boolean | Array<string | boolean> | undefined> {
  return parseCommandLine({ args: argv, allowPositionals: true, strict: true, options: { json: { type: 'boolean' }, ...options } }, usage).values
}

const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  ENOTDIR: 'no such file (a part of its path is not a directory)',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'it is a directory'
}

/** Why a file named on the command line could not be read, in words rather than an errno code. */
export function fileProblem (err: unknown): string {
  const { code, message } = err as NodeJS.ErrnoException
  return (code === undefined ? undefined : FILE_ERRORS[code]) ?? code ?? message
}

export interface Output {
  json: boolean
  result: (human: string, data: unknown) => void
}

/**
 * Control characters (C0, DEL, C1) and bidirectional overrides: stored text
 * (a username someone tried to log in with) must not drive the operator's
 * terminal, so it is shown escaped.
 */
const UNPRINTABLE = /\p{Cc}|[\u202a-\u202e\u2066-\u2069]/gu

export function printable (text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

export function commandOutput (json: boolean): Output {
  return {
    json,
    // JSON.stringify escapes C0 only; the same escapes stay valid JSON for the rest.
    result: (human, data) => { process.stdout.write(json ? `${printable(JSON.stringify(data))}\n` : `${human}\n`) }
  }
}

/** Renders rows as aligned columns for people, every cell printable. */
export function formatTable (rawRows: Array<Record<string, string>>): string {
  const rows = rawRows.map((row) => Object.fromEntries(Object.entries(row).map(([column, cell]) => [column, printable(cell)])))
  const first = rows[0]
  if (first === undefined) return '(none)'
  const columns = Object.keys(first)
  // A fold, not Math.max(...cells): spread as arguments, a column of some 120,000 rows (`users list`) overflowed the stack.
  const widths = columns.map((c) => rows.reduce((width, r) => Math.max(width, (r[c] ?? '').length), c.length))
  const line = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(columns), ...rows.map((r) => line(columns.map((c) => r[c] ?? '')))].join('\n')
}
